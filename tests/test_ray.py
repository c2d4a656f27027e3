"""fastrerank.integrations.ray: same scores as Reranker, clear row errors, top-n per query, a pool that
fits, work spread over actors, and output that a re-run replaces; on a local Ray."""

from __future__ import annotations

import json
import math
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
from fastrerank.integrations import _parquet_output as parquet_output  # noqa: E402
from fastrerank.integrations import _ray_pool as ray_pool  # noqa: E402
from fastrerank.integrations.ray import (  # noqa: E402
    RerankScorer,
    _top_n_of_group,
    actor_pool_size,
    spread_over_actors,
    top_n_per_query,
    write_parquet_replacing,
)

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
    context.wait_for_min_actors_s = 60  # as the recipe does: every actor is up before the first block goes out
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


def test_a_batch_is_scored_in_one_score_pairs_call(converted, tiny_reranker, pairs_frame, monkeypatch):  # type: ignore[no-untyped-def]
    scorer = RerankScorer(converted("tiny"), threads=1)
    calls: list[int] = []
    real = scorer.reranker.score_pairs

    def counting(pairs, **options):  # type: ignore[no-untyped-def]
        calls.append(len(pairs))
        return real(pairs, **options)

    def per_query(*args, **options):  # type: ignore[no-untyped-def]
        raise AssertionError("a batch without bad rows is scored per query")

    monkeypatch.setattr(scorer.reranker, "score_pairs", counting)
    monkeypatch.setattr(scorer.reranker, "score", per_query)
    scores = _frame(scorer(pairs_frame))["score"].to_numpy(dtype=np.float64)
    assert calls == [len(pairs_frame)]  # every pair of every query in one call
    np.testing.assert_allclose(scores, _expected(tiny_reranker, pairs_frame), rtol=0, atol=1e-6)


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


@pytest.mark.parametrize("batch_format", ["pandas", "pyarrow", "numpy"])
def test_worker_column_names_the_process_that_scored_each_row_only_when_asked(converted, pairs_frame, batch_format):  # type: ignore[no-untyped-def]
    import socket

    batch = _as(pairs_frame, batch_format)
    plain = _frame(RerankScorer(converted("tiny"), threads=1)(batch))
    assert list(plain.columns) == [*pairs_frame.columns, "score"]  # nothing added by default
    traced = _frame(RerankScorer(converted("tiny"), threads=1, worker_column="worker")(batch))
    assert list(traced.columns) == [*pairs_frame.columns, "score", "worker"]
    assert set(traced["worker"]) == {f"{socket.gethostname()}:{os.getpid()}"}
    np.testing.assert_array_equal(traced["score"], plain["score"])
    with pytest.raises(InvalidInputError, match="already has a column 'doc_id'; pass another worker_column"):
        RerankScorer(converted("tiny"), threads=1, worker_column="doc_id")(batch)
    with pytest.raises(InvalidInputError, match="worker_column 'score' must differ"):
        RerankScorer(converted("tiny"), threads=1, worker_column="score")


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


def test_cache_dir_and_local_files_only_reach_the_reranker(hf_models, converted, pairs_frame, tmp_path):  # type: ignore[no-untyped-def]
    scorer = RerankScorer(hf_models["tiny"], threads=1, compute_type="float32", cache_dir=tmp_path / "mine",
                          local_files_only=True)
    assert scorer.reranker.model_path.parent == tmp_path / "mine"
    expected = RerankScorer(converted("tiny"), threads=1)(pairs_frame)["score"].to_numpy()
    np.testing.assert_allclose(scorer(pairs_frame)["score"].to_numpy(), expected, rtol=0, atol=1e-6)


def test_top_n_of_a_group_sorts_by_score_then_order_key():
    group = pa.table({"doc_id": ["d3", "d1", "d2", "d0"], "score": [0.5, 0.9, 0.5, 0.5]})
    top = _top_n_of_group(group, n=3, score_column="score", order_key="doc_id", rank_column="rank")
    assert top.to_pydict() == {"doc_id": ["d1", "d0", "d2"], "score": [0.9, 0.5, 0.5], "rank": [1, 2, 3]}
    arrival = _top_n_of_group(group, n=10, score_column="score", order_key=None, rank_column="rank")
    assert arrival.column("doc_id").to_pylist() == ["d1", "d3", "d2", "d0"]  # stable: ties keep their order
    with pytest.raises(InvalidTypeError, match="explode them"):
        _top_n_of_group(pa.table({"score": [[0.1]]}), n=1, score_column="score", order_key=None, rank_column="rank")


# ---- sizing the pool and spreading the rows, without Ray ------------------------------------------


@pytest.mark.parametrize(("num_cpus", "actors", "cluster_cpus", "expected"), [
    (1, None, 8, 7), (2, None, 8, 3), (0.5, None, 2, 2), (0.1, None, 2, 10), (1, 7, 8, 7), (1, 1, 2, 1), (0, 5, 2, 5),
])
def test_actor_pool_size_fills_the_cpus_but_one(num_cpus, actors, cluster_cpus, expected):  # type: ignore[no-untyped-def]
    assert actor_pool_size(num_cpus, actors=actors, cluster_cpus=cluster_cpus) == expected


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"num_cpus": 1, "actors": 8, "cluster_cpus": 8}, InvalidInputError,
     "actors=8 x num_cpus=1 needs 8 CPUs, too many: the cluster has 8 CPUs and one stays free"),
    ({"num_cpus": 2, "actors": 4, "cluster_cpus": 8}, InvalidInputError, "at most 3 actors of num_cpus=2 fit"),
    ({"num_cpus": 2, "cluster_cpus": 2}, InvalidInputError,
     "num_cpus=2 does not fit even one actor: the cluster has 2 CPUs"),
    ({"num_cpus": 0.5, "cluster_cpus": 1}, InvalidInputError, "pass num_cpus <= 0 or start Ray with more CPUs"),
    ({"num_cpus": 0, "cluster_cpus": 4}, InvalidInputError, "actors must be given when num_cpus=0"),
    ({"num_cpus": "1", "cluster_cpus": 4}, InvalidTypeError, "num_cpus must be a number of CPUs (int or float), got str"),
    ({"num_cpus": -1, "cluster_cpus": 4}, InvalidInputError, "num_cpus must be a finite number >= 0, got -1"),
    ({"num_cpus": 1, "cluster_cpus": float("nan")}, InvalidInputError, "cluster_cpus must be a finite number >= 0"),
    ({"num_cpus": 1, "actors": 0, "cluster_cpus": 4}, InvalidInputError, "actors must be >= 1, got 0"),
])
def test_actor_pool_size_refuses_a_pool_that_would_hang_naming_the_parameter(options, error, message):  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=re.escape(message)):
        actor_pool_size(**options)


def test_actor_pool_size_needs_ray_or_cluster_cpus(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(InvalidInputError, match=re.escape("cluster_cpus was not given and Ray is not initialized")):
        actor_pool_size(num_cpus=1)


@pytest.mark.parametrize("actors", [1, 2, 3, 8])
@pytest.mark.parametrize("rows", [0, 1, 7, 24, 3002, 10**7])
def test_rows_per_block_gives_every_actor_blocks(rows, actors):  # type: ignore[no-untyped-def]
    per_block = ray_pool.rows_per_block(rows, actors, max_rows_per_block=4096)
    assert 1 <= per_block <= 4096
    blocks = math.ceil(rows / per_block)
    if rows >= actors * ray_pool.BLOCKS_PER_ACTOR:  # enough rows: a few blocks for every actor
        assert actors * ray_pool.BLOCKS_PER_ACTOR // 2 < blocks
    if per_block < 4096:  # not capped: no more blocks than planned
        assert blocks <= actors * ray_pool.BLOCKS_PER_ACTOR


class _Dataset:
    """Records how spread_over_actors repartitions; ``repartition`` with or without streaming repartition."""

    def __init__(self, rows: int, *, streaming: bool) -> None:
        self.rows, self.calls = rows, []  # type: ignore[var-annotated]
        if streaming:
            self.repartition = self._streaming  # type: ignore[method-assign]

    def count(self) -> int:
        return self.rows

    def repartition(self, num_blocks: int) -> _Dataset:
        self.calls.append({"num_blocks": num_blocks})
        return self

    def _streaming(self, num_blocks: int | None = None, target_num_rows_per_block: int | None = None) -> _Dataset:
        self.calls.append({"target_num_rows_per_block": target_num_rows_per_block})
        return self


@pytest.mark.parametrize(("rows", "actors", "streaming", "call"), [
    (24, 2, True, {"target_num_rows_per_block": 3}),
    (3002, 2, True, {"target_num_rows_per_block": 376}),
    (24, 2, False, {"num_blocks": 8}),
    (3002, 3, False, {"num_blocks": 12}),
    (100_000, 3, False, {"num_blocks": 27}),  # 25 blocks of 4096 rows, rounded up to a multiple of 3
])
def test_spread_over_actors_sizes_blocks_from_the_row_count(rows, actors, streaming, call):  # type: ignore[no-untyped-def]
    ds = _Dataset(rows, streaming=streaming)
    assert spread_over_actors(ds, actors) is ds  # type: ignore[arg-type]
    assert ds.calls == [call]
    with pytest.raises(InvalidInputError, match="actors must be >= 1, got 0"):
        spread_over_actors(ds, 0)  # type: ignore[arg-type]


# ---- writing the output so that a re-run replaces it, without Ray --------------------------------


class _Writer:
    """A dataset whose write_parquet adds a uniquely named file to a folder, as Ray's does; ``fail`` after writing."""

    def __init__(self, table: pa.Table, *, fail: bool = False) -> None:
        self.table, self.fail, self.runs = table, fail, 0

    def write_parquet(self, path: str) -> None:
        self.runs += 1
        os.makedirs(path, exist_ok=True)
        pq.write_table(self.table, os.path.join(path, f"run{self.runs}-{os.urandom(4).hex()}_000000-0.parquet"))
        if self.fail:
            raise RuntimeError("a worker died")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_write_parquet_replacing_replaces_a_previous_output_and_nothing_else(tmp_path):  # type: ignore[no-untyped-def]
    table = pa.table({"query_id": ["q0", "q1"], "score": [0.5, 0.25]})
    ds = _Writer(table)
    (tmp_path / "empty").mkdir()
    for output in (tmp_path / "ranked", tmp_path / "empty"):
        for _ in range(3):
            assert write_parquet_replacing(ds, output) == output  # type: ignore[arg-type]
            assert _one_set_of_results(output).equals(table.to_pandas())
    assert str(write_parquet_replacing(ds, os.path.relpath(tmp_path / "ranked"))) == str(tmp_path / "ranked")  # type: ignore[arg-type]


def test_write_parquet_replacing_refuses_what_it_did_not_write(tmp_path):  # type: ignore[no-untyped-def]
    ds = _Writer(pa.table({"x": [1]}))
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    (tmp_path / "link").symlink_to(user)
    previous = tmp_path / "previous"
    write_parquet_replacing(ds, previous)  # type: ignore[arg-type]
    extended = tmp_path / "extended"
    write_parquet_replacing(ds, extended)  # type: ignore[arg-type]
    (extended / "summary.csv").write_text("mine")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / parquet_output.OUTPUT_MARKER).write_text(json.dumps({"written_by": "someone", "files": []}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / parquet_output.OUTPUT_MARKER).write_text("{")
    before = _tree(tmp_path)
    cases = [
        (user, "exists and is not a previous output (it has no _fastrerank_output.json)"),
        (tmp_path / "file", "exists and is a file"),
        (tmp_path / "link", "exists and is a symbolic link"),
        (extended, "exists and is a previous output holding files it did not write ('summary.csv')"),
        (foreign, "its _fastrerank_output.json names another writer"),
        (broken, "its _fastrerank_output.json is unreadable"),
    ]
    for output, message in cases:
        with pytest.raises(InvalidInputError, match=re.escape(f"output {str(output)!r} {message}") if "exists" in message
                           else re.escape(message)) as info:
            write_parquet_replacing(ds, output)  # type: ignore[arg-type]
        assert "choose another output or remove it yourself (nothing was changed)" in str(info.value)
    with pytest.raises(InvalidInputError, match=re.escape("output 's3://bucket/ranked' is a URI")):
        write_parquet_replacing(ds, "s3://bucket/ranked")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="output must be a folder path"):
        write_parquet_replacing(ds, None)  # type: ignore[arg-type]
    assert ds.runs == 2  # every refusal came before the job ran
    assert _tree(tmp_path) == before


def test_a_failed_run_leaves_the_previous_output_as_it_was(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    output = tmp_path / "ranked"
    write_parquet_replacing(_Writer(pa.table({"x": [1]})), output)  # type: ignore[arg-type]
    before = _tree(tmp_path)
    with pytest.raises(RuntimeError, match="a worker died"):
        write_parquet_replacing(_Writer(pa.table({"x": [2]}), fail=True), output)  # type: ignore[arg-type]
    assert _tree(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["ranked"]

    renames = []

    def rename(source, target):  # type: ignore[no-untyped-def]
        renames.append(Path(source).name)
        if ".tmp-" in Path(source).name:  # the new results cannot be moved into place
            raise OSError("disk gone")
        os.replace(source, target)

    monkeypatch.setattr(parquet_output.os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        write_parquet_replacing(_Writer(pa.table({"x": [3]})), output)  # type: ignore[arg-type]
    assert len(renames) == 3  # previous aside, the new one failed, previous back
    assert _tree(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["ranked"]


# ---- through Ray Data on a local instance --------------------------------------------------------


def _one_set_of_results(output: Path) -> pd.DataFrame:
    """The results in ``output``, after checking that it holds exactly one run's files and nothing is left beside it."""
    record = json.loads((output / parquet_output.OUTPUT_MARKER).read_text())
    assert sorted(path.name for path in output.iterdir()) == sorted([*record["files"], parquet_output.OUTPUT_MARKER])
    assert [path.name for path in output.parent.iterdir() if path.name.startswith(output.name)] == [output.name]
    return pd.read_parquet(output)


def test_the_recipe_spreads_one_parquet_file_over_two_actors_and_a_rerun_replaces_the_output(  # type: ignore[no-untyped-def]
        local_ray, converted, tiny_reranker, pairs_frame, tmp_path):
    pq.write_table(pa.Table.from_pandas(pairs_frame, preserve_index=False), tmp_path / "pairs.parquet")  # one block
    actors = actor_pool_size(num_cpus=0.5)  # two actors on the 2-CPU instance, one CPU left to read and write
    assert actors == 2
    scored = spread_over_actors(ray.data.read_parquet(str(tmp_path / "pairs.parquet")), actors).map_batches(
        RerankScorer, fn_constructor_kwargs={"model": str(converted("tiny")), "worker_column": "worker"},
        batch_format="pyarrow", batch_size=5, num_cpus=0.5, compute=ray.data.ActorPoolStrategy(size=actors),
    ).materialize()

    everything = scored.to_pandas().sort_values("position").reset_index(drop=True)
    assert everything["worker"].nunique() == 2, everything["worker"].value_counts()  # both actors scored rows
    assert list(everything["position"]) == list(pairs_frame["position"])
    expected = _expected(tiny_reranker, pairs_frame)
    np.testing.assert_allclose(everything["score"], expected, rtol=0, atol=1e-6)

    ranked = tmp_path / "ranked"
    for _ in range(2):  # the second run replaces the first one's files instead of adding to them
        written = write_parquet_replacing(top_n_per_query(scored, 3, order_key="position", num_partitions=2), ranked)
        assert written == ranked
        result = _one_set_of_results(ranked)
        assert len(result) == 3 * len(QUERIES)
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


def test_a_pool_too_large_for_the_running_ray_is_refused_before_anything_runs(local_ray):  # type: ignore[no-untyped-def]
    """2 actors x 1 CPU on a 2-CPU Ray leave no CPU to read the input: Ray would wait (30 minutes); the check refuses at once."""
    with pytest.raises(InvalidInputError, match=re.escape(
            "actors=2 x num_cpus=1 needs 2 CPUs, too many: the cluster has 2 CPUs and one stays free for Ray Data "
            "to read and write (actors x num_cpus <= CPUs - 1); otherwise the job waits for a CPU that never comes "
            "free; at most 1 actor of num_cpus=1 fit")):
        actor_pool_size(num_cpus=1, actors=2)
    assert actor_pool_size(num_cpus=1) == 1


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
    """The recipe's Python block (docs/integrations/ray.md), on the tiny model and the already running local Ray."""
    heading = "## Batch reranking on a Ray cluster"
    section = (ROOT / "docs" / "integrations" / "ray.md").read_text(encoding="utf-8").split(heading, 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    pq.write_table(pa.Table.from_pylist(_pairs()), tmp_path / "pairs.parquet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTRERANK_MODEL", str(converted("tiny", "int8")))
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: None)
    for _ in range(2):  # as written, a re-run replaces ranked/
        exec(compile(code, "docs/integrations/ray.md", "exec"), {})
        ranked = _one_set_of_results(tmp_path / "ranked")
        assert sorted(ranked.groupby("query_id")["rank"].max()) == [len(DOCS)] * len(QUERIES)  # top 10 of 8
        assert len(ranked) == len(DOCS) * len(QUERIES)


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
