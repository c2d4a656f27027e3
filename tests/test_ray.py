"""fastrerank.integrations.ray: same scores as Reranker, clear row errors, top-n per query, on a local Ray."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")

import fastrerank  # noqa: E402
from fastrerank import InvalidInputError, InvalidTypeError, Reranker  # noqa: E402
from fastrerank.integrations.ray import RerankScorer, _top_n_of_group, top_n_per_query  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
QUERIES = {"q0": "apple banana fruit", "q1": "machine learning model", "q2": "预防感冒应勤洗手"}
DOCS = [
    "the apple is a fruit and the banana is a fruit",
    "machine learning is a science of data",
    "预防感冒应勤洗手戴口罩",
    "city river mountain history music film book library",
    "",
    "the best search engine server for retrieval",
    "apple banana fruit vegetable pizza great",
    "the apple is a fruit and the banana is a fruit",  # a duplicate: ties
]


def _pairs() -> list[dict[str, object]]:
    """Rows interleaving the queries, so that one batch holds several and a query spans batches."""
    rows = []
    for position, (doc_index, query_id) in enumerate((d, q) for d in range(len(DOCS)) for q in QUERIES):
        rows.append({"query_id": query_id, "query": QUERIES[query_id], "doc_id": f"d{doc_index}",
                     "document": DOCS[doc_index], "position": position})
    return rows


def _as(frame: pd.DataFrame, batch_format: str):  # type: ignore[no-untyped-def]
    if batch_format == "pandas":
        return frame
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table if batch_format == "pyarrow" else {name: table.column(name).to_numpy(zero_copy_only=False)
                                                    for name in table.column_names}


def _frame(batch) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    if isinstance(batch, dict):
        return pd.DataFrame({name: list(values) for name, values in batch.items()})
    return batch if isinstance(batch, pd.DataFrame) else batch.to_pandas()


def _expected(reranker: Reranker, frame: pd.DataFrame, **options: object) -> np.ndarray:
    """Reranker.score on each query's documents, put back in row order."""
    expected = np.empty(len(frame))
    for query, rows in frame.groupby("query", sort=False).indices.items():
        expected[rows] = reranker.score(query, list(frame["document"].iloc[rows]), **options)
    return expected


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    """One small local Ray instance for the module; its workers import this checkout's fastrerank."""
    source = str(Path(fastrerank.__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2,
             runtime_env={"env_vars": {"PYTHONPATH": python_path}})
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.max_errored_blocks = 0
    if hasattr(context, "default_hash_shuffle_parallelism"):
        context.default_hash_shuffle_parallelism = 2  # not 200 partitions for 24 rows
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def pairs_frame() -> pd.DataFrame:
    return pd.DataFrame(_pairs())


# ---- the scorer on one batch, in this process ----------------------------------------------------


@pytest.mark.parametrize("batch_format", ["pandas", "pyarrow", "numpy"])
def test_scores_equal_reranker_score_in_every_batch_format(converted, tiny_reranker, pairs_frame, batch_format):  # type: ignore[no-untyped-def]
    scorer = RerankScorer(converted("tiny"), threads=1)
    batch = _as(pairs_frame, batch_format)
    out = scorer(batch)
    assert type(out) is type(batch)
    frame = _frame(out)
    assert list(frame.columns) == [*pairs_frame.columns, "score"]
    assert frame.drop(columns="score").equals(pairs_frame)  # ids and order pass through
    np.testing.assert_allclose(frame["score"].to_numpy(dtype=np.float64), _expected(tiny_reranker, pairs_frame),
                               rtol=0, atol=1e-6)
    assert "score" not in _frame(batch).columns  # the caller's batch is untouched


def test_scores_do_not_depend_on_batching(converted, pairs_frame):  # type: ignore[no-untyped-def]
    scorer = RerankScorer(converted("tiny"), threads=1)
    whole = scorer(pairs_frame)["score"].to_numpy()
    pieces = np.concatenate([scorer(pairs_frame.iloc[start:start + 5])["score"].to_numpy()
                             for start in range(0, len(pairs_frame), 5)])
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-6)


def test_chunking_options_reach_the_reranker(converted, pairs_frame):  # type: ignore[no-untyped-def]
    options = {"overlap_tokens": 8, "max_chunks_per_doc": 2, "raw": True}
    long_docs = pairs_frame.assign(document=[text * 6 for text in pairs_frame["document"]])
    scorer = RerankScorer(converted("short"), threads=1, max_length=32, **options)
    got = scorer(long_docs)["score"].to_numpy()
    with Reranker(converted("short"), threads=1, max_length=32) as reference:
        np.testing.assert_allclose(got, _expected(reference, long_docs, **options), rtol=0, atol=1e-6)
        assert not np.allclose(got, _expected(reference, long_docs, raw=True))  # the options mattered


@pytest.mark.parametrize("batch_format", ["pandas", "pyarrow", "numpy"])
def test_candidates_column_gives_one_score_list_per_row(converted, tiny_reranker, batch_format):  # type: ignore[no-untyped-def]
    frame = pd.DataFrame({"query": ["apple", "machine learning", "apple"],
                          "candidates": [DOCS[:3], [], DOCS[3:]]})
    out = _frame(RerankScorer(converted("tiny"), candidates_column="candidates", threads=1)(_as(frame, batch_format)))
    for query, docs, scores in zip(frame["query"], frame["candidates"], out["score"]):
        np.testing.assert_allclose(np.asarray(scores, dtype=np.float64), tiny_reranker.score(query, list(docs)),
                                   rtol=0, atol=1e-6)


def test_empty_batch(converted, pairs_frame):  # type: ignore[no-untyped-def]
    out = RerankScorer(converted("tiny"), threads=1)(pa.Table.from_pandas(pairs_frame.iloc[:0], preserve_index=False))
    assert out.num_rows == 0 and out.column_names[-1] == "score"


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"document": None}, InvalidTypeError, "row 4 of the batch (query_id='q1', doc_id='d1'): document is null"),
        ({"document": 17}, InvalidTypeError, "row 4 of the batch (query_id='q1', doc_id='d1'): document must be str, got int 17"),
        ({"query": None}, InvalidTypeError, "row 4 of the batch (query_id='q1', doc_id='d1'): query is null"),
        ({"query": "   "}, InvalidInputError, "row 4 of the batch (query_id='q1', doc_id='d1'): query: query must not be only whitespace"),
    ],
)
def test_bad_rows_are_named(converted, pairs_frame, change, error, message):  # type: ignore[no-untyped-def]
    frame = pairs_frame.astype(object)
    for column, value in change.items():
        frame.at[4, column] = value
    with pytest.raises(error, match=re.escape(message)):
        RerankScorer(converted("tiny"), threads=1)(frame)


def test_null_from_arrow_and_nan_from_pandas_are_nulls(converted, pairs_frame):  # type: ignore[no-untyped-def]
    scorer = RerankScorer(converted("tiny"), threads=1, id_columns=["position"])
    table = pa.Table.from_pandas(pairs_frame, preserve_index=False)
    documents = table.column("document").to_pylist()
    documents[2] = None
    table = table.set_column(table.column_names.index("document"), "document", pa.array(documents, pa.string()))
    with pytest.raises(InvalidTypeError, match=re.escape("row 2 of the batch (position=2): document is null")):
        scorer(table)
    with pytest.raises(InvalidTypeError, match=re.escape("row 2 of the batch (position=2): document is null")):
        scorer(table.to_pandas())  # pandas may turn the null into NaN


def test_bad_candidates_are_named(converted):  # type: ignore[no-untyped-def]
    scorer = RerankScorer(converted("tiny"), candidates_column="candidates", threads=1)
    with pytest.raises(InvalidTypeError, match=re.escape("row 1 of the batch (id=8): candidates[1] must be str, got int")):
        scorer(pd.DataFrame({"id": [7, 8], "query": ["a", "b"], "candidates": [["x"], ["y", 3]]}))
    with pytest.raises(InvalidTypeError, match=re.escape("row 0 of the batch: candidates must be a list of str, got str")):
        scorer(pd.DataFrame({"query": ["a"], "candidates": ["not a list"]}))


def test_missing_or_clashing_columns(converted, pairs_frame):  # type: ignore[no-untyped-def]
    scorer = RerankScorer(converted("tiny"), threads=1)
    renamed = pairs_frame.rename(columns={"document": "text"})
    with pytest.raises(InvalidInputError, match=r"no column 'document' \(document_column\); its columns are .*'text'"):
        scorer(renamed)
    assert "score" in RerankScorer(converted("tiny"), document_column="text", threads=1)(renamed).columns
    with pytest.raises(InvalidInputError, match="already has a column 'score'; pass another score_column"):
        scorer(pairs_frame.assign(score=0.0))
    with pytest.raises(InvalidTypeError, match="a batch must be a pandas.DataFrame, a pyarrow.Table or a dict"):
        scorer([{"query": "a", "document": "b"}])


@pytest.mark.parametrize(
    ("options", "error"),
    [({"overlap_tokens": 81}, InvalidInputError), ({"threads": "2"}, InvalidTypeError),
     ({"score_column": "query"}, InvalidInputError), ({"document_column": ""}, InvalidInputError),
     ({"max_length": 10}, InvalidInputError)],
)
def test_bad_options_fail_at_construction(converted, options, error):  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        RerankScorer(converted("tiny"), **options)


def test_top_n_of_a_group_sorts_by_score_then_order_key():
    group = pa.table({"doc_id": ["d3", "d1", "d2", "d0"], "score": [0.5, 0.9, 0.5, 0.5]})
    top = _top_n_of_group(group, n=3, score_column="score", order_key="doc_id", rank_column="rank")
    assert top.to_pydict() == {"doc_id": ["d1", "d0", "d2"], "score": [0.9, 0.5, 0.5], "rank": [1, 2, 3]}
    arrival = _top_n_of_group(group, n=10, score_column="score", order_key=None, rank_column="rank")
    assert arrival.column("doc_id").to_pylist() == ["d1", "d3", "d2", "d0"]  # stable: ties keep their order
    with pytest.raises(InvalidTypeError, match="explode them"):
        _top_n_of_group(pa.table({"score": [[0.1]]}), n=1, score_column="score", order_key=None, rank_column="rank")


# ---- through Ray Data on a local instance --------------------------------------------------------


def test_parquet_to_ranked_parquet_through_ray(local_ray, converted, tiny_reranker, pairs_frame, tmp_path):  # type: ignore[no-untyped-def]
    source = tmp_path / "pairs"
    source.mkdir()
    for part, start in enumerate(range(0, len(pairs_frame), 7)):  # several files: several blocks, several actors busy
        pq.write_table(pa.Table.from_pandas(pairs_frame.iloc[start:start + 7], preserve_index=False),
                       source / f"part-{part}.parquet")
    scored = ray.data.read_parquet(str(source)).repartition(4).map_batches(
        RerankScorer, fn_constructor_kwargs={"model": str(converted("tiny"))},
        batch_format="pyarrow", batch_size=5, compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=0.5,  # two actors on a 2-CPU instance must leave room for the read and shuffle tasks
    ).materialize()
    top_n_per_query(scored, 3, order_key="position", num_partitions=2).write_parquet(str(tmp_path / "ranked"))

    everything = scored.to_pandas().sort_values("position").reset_index(drop=True)
    expected = _expected(tiny_reranker, pairs_frame)
    np.testing.assert_allclose(everything["score"], expected, rtol=0, atol=1e-6)
    result = pd.read_parquet(tmp_path / "ranked")
    for query_id, query in QUERIES.items():
        rows = pairs_frame[pairs_frame["query_id"] == query_id].reset_index(drop=True)
        ranking = tiny_reranker.rank(query, list(rows["document"]), top_n=3)
        got = result[result["query_id"] == query_id].sort_values("rank")
        assert list(got["rank"]) == [1, 2, 3]
        assert np.all(np.diff(got["score"]) <= 0)
        np.testing.assert_allclose(got["score"], [item.score for item in ranking], rtol=0, atol=1e-6)
        # the same documents, up to the order of near-ties: identical documents scored in different
        # batches may differ in the last bits, so compare each rank's reference score, not its doc id
        reference = dict(zip(pairs_frame["doc_id"][pairs_frame["query_id"] == query_id], expected[pairs_frame["query_id"] == query_id]))
        np.testing.assert_allclose([reference[doc] for doc in got["doc_id"]], [item.score for item in ranking],
                                   rtol=0, atol=1e-6)


def test_a_bad_row_fails_the_ray_job_naming_it(local_ray, converted, pairs_frame):  # type: ignore[no-untyped-def]
    rows = pairs_frame.astype(object)
    rows.at[5, "document"] = None
    ds = ray.data.from_pandas(rows).map_batches(
        RerankScorer, fn_constructor_kwargs={"model": str(converted("tiny"))},
        batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=1),
    )
    with pytest.raises(Exception, match=re.escape("(query_id='q2', doc_id='d1'): document is null")) as info:
        ds.materialize()
    assert "fastrerank.errors.InvalidTypeError" in str(info.value)  # Ray keeps the error as text, not as a cause


def test_the_docs_recipe_runs(local_ray, converted, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The recipe's Python block (README.md or docs/ray.md), on the tiny model and the already running local Ray."""
    heading = "## Batch reranking on a Ray cluster"
    texts = [path.read_text(encoding="utf-8") for path in (ROOT / "README.md", ROOT / "docs" / "ray.md") if path.exists()]
    section = next(text.split(heading, 1)[1] for text in texts if heading in text)
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    pq.write_table(pa.Table.from_pylist(_pairs()), tmp_path / "pairs.parquet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTRERANK_MODEL", str(converted("tiny", "int8")))
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: None)
    exec(compile(code, "docs/ray.md", "exec"), {})
    ranked = pd.read_parquet(tmp_path / "ranked")
    assert sorted(ranked.groupby("query_id")["rank"].max()) == [len(DOCS)] * len(QUERIES)  # top 10 of 8


def test_threads_default_to_the_cpus_ray_reserved(local_ray):  # type: ignore[no-untyped-def]
    from fastrerank.integrations.ray import _actor_cpus

    reserved = [ray.get(ray.remote(num_cpus=cpus)(_actor_cpus).remote()) for cpus in (0.5, 1, 2)]
    assert reserved == [1, 1, 2]
    assert _actor_cpus() == 0  # the driver reserved nothing: every core


# ---- imports -------------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_importing_fastrerank_or_the_adapter_does_not_import_ray():
    done = _python("import sys, fastrerank, fastrerank.integrations.ray; print('ray' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_ray_the_adapter_says_which_extra_to_install():
    done = _python(
        "import sys; sys.modules['ray'] = None\n"
        "import fastrerank\n"
        "try:\n    import fastrerank.integrations.ray\n"
        "except fastrerank.MissingDependencyError as err:\n    print(type(err).__mro__[2].__name__, err)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("ImportError fastrerank.integrations.ray needs ray, which is not installed: "
                                   "pip install 'fastrerank[ray]'")
