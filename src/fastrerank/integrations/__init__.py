"""Adapters to outside data and compute frameworks, each behind its own optional extra.

Nothing here is imported by ``import fastrerank``; import the adapter you need, for example
``from fastrerank.integrations.ray import RerankScorer`` (extra ``fastrerank[ray]``).
"""

__all__: list[str] = []
