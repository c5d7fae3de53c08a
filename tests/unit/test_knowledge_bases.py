"""Several knowledge bases in one Retriever, and metadata filters in the search."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import faiss
import numpy as np
import pytest
from pydantic import ValidationError
from ray.exceptions import RayTaskError

from deployments.embedder.config import HashingEmbedderConfig
from deployments.embedder.factory import create_embedder
from deployments.index.format import InvalidIndexError, resolve_version_dir
from deployments.ingress.stages import unknown_knowledge_base
from deployments.retriever import faiss_search
from deployments.retriever.config import KnowledgeBaseConfig, RetrieverConfig
from deployments.retriever.deployment import Retriever, UnknownKnowledgeBase
from deployments.retriever.faiss_search import FaissRetriever
from deployments.retriever.filters import Condition, InvalidFilter, MetadataFilter
from serve.app import in_process_stages
from serve.config import AppConfig
from serve.indexing.build import BuildSettings, build_index
from tests.support import write_jsonl

CATEGORIES = ("観光", "歴史", "食")


def catalogue_records() -> list[dict[str, object]]:
    """30 short documents with metadata: category, year, published date, optional tag."""
    records: list[dict[str, object]] = []
    for n in range(30):
        record: dict[str, object] = {
            "id": f"doc-{n:02d}",
            "title": f"資料{n}",
            "text": f"これは{CATEGORIES[n % 3]}についての資料{n}です。港町の話です。",
            "category": CATEGORIES[n % 3],
            "year": 2000 + n,
            "published": f"20{n:02d}-04-01",
        }
        if n % 5 == 0:
            record["tag"] = "特集"
        records.append(record)
    return records


@pytest.fixture(scope="module")
def catalogue_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    corpus = write_jsonl(root / "catalogue.jsonl", catalogue_records())
    build_index([corpus], root / "index", HashingEmbedderConfig(), BuildSettings(progress=False))
    return root / "index"


@pytest.fixture(scope="module")
def catalogue(catalogue_index: Path) -> FaissRetriever:
    return FaissRetriever(resolve_version_dir(catalogue_index), RetrieverConfig())


def query_vector(index: Path, text: str) -> np.ndarray:
    embedder = create_embedder(HashingEmbedderConfig(), resolve_version_dir(index))
    return embedder.embed_queries([text])


# --- configuration -----------------------------------------------------------------


def test_a_single_index_is_the_knowledge_base_named_default() -> None:
    config = AppConfig.model_validate({"index": {"path": "indexes/demo"}})
    (base,) = config.served_knowledge_bases
    assert base.name == "default" and base.path == "indexes/demo"


def test_knowledge_bases_as_a_mapping_or_a_list() -> None:
    mapping = AppConfig.model_validate({"knowledge_bases": {"hr": "idx/hr", "it": "idx/it"}})
    assert [b.name for b in mapping.served_knowledge_bases] == ["hr", "it"]
    assert mapping.index.path == "idx/hr", "index is the first (default) knowledge base's"
    listed = AppConfig.model_validate(
        {
            "knowledge_bases": [
                {"name": "hr", "path": "idx/hr", "description": "人事規程"},
                {"name": "it", "path": "idx/it", "version": "v2"},
            ]
        }
    )
    assert listed.served_knowledge_bases[0].description == "人事規程"
    assert listed.served_knowledge_bases[1].version == "v2"
    # A dump reads back the same (the derived index agrees with the first base).
    assert AppConfig.model_validate(listed.model_dump()) == listed


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({}, "index"),
        ({"knowledge_bases": {}}, "at least one"),
        (
            {"knowledge_bases": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]},
            "unique",
        ),
        ({"knowledge_bases": {"bad name": "x"}}, "pattern"),
        ({"index": {"path": "z"}, "knowledge_bases": {"a": "x"}}, "either index"),
    ],
)
def test_bad_knowledge_base_configs_are_refused(args: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        AppConfig.model_validate(args)


# --- the Retriever over several bases --------------------------------------------


def test_one_retriever_searches_each_knowledge_base(
    demo_index: Path, catalogue_index: Path
) -> None:
    retriever = Retriever(
        RetrieverConfig(),
        [
            KnowledgeBaseConfig(name="prefectures", path=str(demo_index)),
            KnowledgeBaseConfig(name="catalogue", path=str(catalogue_index)),
        ],
    )
    vector = query_vector(catalogue_index, "港町の資料")[0]
    default_hits = asyncio.run(retriever.search(vector, 3))
    catalogue_hits = asyncio.run(retriever.search(vector, 3, "catalogue"))
    assert all(h.passage.id.startswith("doc-") for h in catalogue_hits)
    assert not any(h.passage.id.startswith("doc-") for h in default_hits)
    names = [b["name"] for b in asyncio.run(retriever.knowledge_bases())]
    assert names == ["prefectures", "catalogue"]
    with pytest.raises(UnknownKnowledgeBase, match="'nope' does not exist"):
        asyncio.run(retriever.search(vector, 3, "nope"))


def test_reconfigure_adds_and_removes_knowledge_bases(
    demo_index: Path, catalogue_index: Path
) -> None:
    retriever = Retriever(
        RetrieverConfig(), [KnowledgeBaseConfig(name="prefectures", path=str(demo_index))]
    )
    loaded = retriever.knowledge_base("prefectures")
    asyncio.run(
        retriever.reconfigure(
            {
                "max_batch_size": 8,
                "knowledge_bases": {"prefectures": str(demo_index), "extra": str(catalogue_index)},
            }
        )
    )
    assert retriever.config.max_batch_size == 8
    assert retriever.knowledge_base("prefectures") is loaded, "an unchanged base is kept"
    vector = query_vector(catalogue_index, "港町")[0]
    assert asyncio.run(retriever.search(vector, 2, "extra"))
    asyncio.run(
        retriever.reconfigure(
            {"knowledge_bases": [{"name": "extra", "path": str(catalogue_index)}]}
        )
    )
    with pytest.raises(UnknownKnowledgeBase):
        retriever.knowledge_base("prefectures")


def test_a_knowledge_base_built_by_another_embedder_is_refused(
    demo_index: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    build_index(
        [tiny_corpus], other, HashingEmbedderConfig(dimension=512), BuildSettings(progress=False)
    )
    retriever = Retriever(
        RetrieverConfig(), [KnowledgeBaseConfig(name="prefectures", path=str(demo_index))]
    )
    with pytest.raises(InvalidIndexError, match="different embedder"):
        asyncio.run(
            retriever.reconfigure({"knowledge_bases": {"p": str(demo_index), "o": str(other)}})
        )
    assert [b["name"] for b in asyncio.run(retriever.knowledge_bases())] == ["prefectures"]
    config = AppConfig.model_validate({"knowledge_bases": {"p": str(demo_index), "o": str(other)}})
    with pytest.raises(InvalidIndexError, match="different embedder"):
        in_process_stages(config)


# --- filters -----------------------------------------------------------------------


def only(names: str, operator: str, value: object = None) -> MetadataFilter:
    return MetadataFilter((Condition.create(names, operator, value),))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (("category", "is", "歴史"), {n for n in range(30) if n % 3 == 1}),
        (("category", "is not", "歴史"), {n for n in range(30) if n % 3 != 1}),
        (("category", "contains", "光"), {n for n in range(30) if n % 3 == 0}),
        (("category", "not contains", "光"), {n for n in range(30) if n % 3 != 0}),
        (("title", "start with", "資料"), set()),  # title is no metadata field
        (("source", "end with", ".jsonl"), set(range(30))),
        (("category", "in", ["食", "歴史"]), {n for n in range(30) if n % 3 != 0}),
        (("category", "not in", ["食", "歴史"]), {n for n in range(30) if n % 3 == 0}),
        (("tag", "empty", None), {n for n in range(30) if n % 5 != 0}),
        (("tag", "not empty", None), {0, 5, 10, 15, 20, 25}),
        (("tag", "not contains", "特"), {n for n in range(30) if n % 5 != 0}),
        (("year", "=", 2007), {7}),
        (("year", "≠", "2007"), set(range(30)) - {7}),
        (("year", ">", 2027), {28, 29}),
        (("year", "<", 2002), {0, 1}),
        (("year", "≥", 2028), {28, 29}),
        (("year", "≤", 2001), {0, 1}),
        (("published", "before", "2002-01-01"), {0, 1}),
        (("published", "after", "2027-12-31T23:59:59Z"), {28, 29}),
        (("published", "after", 1830297600), {28, 29}),  # 2028-01-01 in Unix seconds
        ((["tag", "category"], "is", "特集"), {0, 5, 10, 15, 20, 25}),
    ],
)
def test_each_operator_selects_the_right_rows(
    catalogue: FaissRetriever, condition: tuple[object, str, object], expected: set[int]
) -> None:
    names, operator, value = condition
    rows = catalogue.matching_rows(only(names, operator, value))  # type: ignore[arg-type]
    ids = {int(catalogue.passages[int(r)].id.split("-")[1]) for r in rows}
    assert ids == expected


def test_conditions_join_with_and_or_or(catalogue: FaissRetriever) -> None:
    history = Condition.create("category", "is", "歴史")
    late = Condition.create("year", "≥", 2020)
    both = catalogue.matching_rows(MetadataFilter((history, late), "and"))
    either = catalogue.matching_rows(MetadataFilter((history, late), "or"))
    assert len(both) == 3  # 22, 25, 28
    assert len(either) == 10 + 10 - 3


@pytest.mark.parametrize(
    ("operator", "value", "fragment"),
    [
        ("like", "x", "unknown comparison_operator"),
        ("is", None, "needs a value"),
        (">", "many", "needs a number"),
        ("before", "someday", "needs a date"),
        ("is", ["a", "b"], "one value"),
    ],
)
def test_malformed_conditions_are_refused(operator: str, value: object, fragment: str) -> None:
    with pytest.raises(InvalidFilter, match=fragment):
        Condition.create("category", operator, value)  # type: ignore[arg-type]


def test_a_filtered_search_returns_top_k_when_that_many_match(
    catalogue: FaissRetriever, catalogue_index: Path
) -> None:
    vector = query_vector(catalogue_index, "食についての資料")
    where = only("category", "is", "歴史")
    hits = catalogue.search(vector, 5, where)[0]
    assert len(hits) == 5
    assert all(h.passage.metadata["category"] == "歴史" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # The best of those an unfiltered search over everything finds (equal scores may
    # come in either order).
    everything = catalogue.search(vector, 30)[0]
    expected = [h.score for h in everything if h.passage.metadata["category"] == "歴史"]
    assert [h.score for h in hits] == pytest.approx(expected[:5])
    assert catalogue.search(vector, 50, where)[0].__len__() == 10, "all that match, no more"
    assert catalogue.search(vector, 5, only("category", "is", "none"))[0] == []


@pytest.mark.parametrize("factory", ["HNSW8", "IVF2,Flat"])
def test_filters_hold_on_approximate_indexes(
    factory: str, catalogue_index: Path, tmp_path: Path
) -> None:
    """A graph index's filtered search may run out of matching neighbours, and an IVF
    index may probe lists without enough matching rows: either way top_k come back."""
    corpus = write_jsonl(tmp_path / "c.jsonl", catalogue_records())
    build_index(
        [corpus],
        tmp_path / "idx",
        HashingEmbedderConfig(),
        BuildSettings(progress=False, faiss_factory=factory),
    )
    retriever = FaissRetriever(resolve_version_dir(tmp_path / "idx"), RetrieverConfig())
    if isinstance(retriever.index, faiss.IndexIVF):
        retriever.index.nprobe = 1
    vector = query_vector(tmp_path / "idx", "港町の資料")
    where = only("year", "=", 2011)
    hits = retriever.search(vector, 3, where)[0]
    assert [h.passage.id for h in hits] == ["doc-11"]
    rare = only("tag", "not empty")
    assert len(retriever.search(vector, 6, rare)[0]) == 6


def test_anunknown_knowledge_base_error_survives_pickling() -> None:
    """Raised in a Retriever replica, it reaches the ingress pickled."""
    error = pickle.loads(pickle.dumps(UnknownKnowledgeBase("nope", ["a", "b"])))
    assert isinstance(error, UnknownKnowledgeBase)
    assert error.name == "nope" and "served: a, b" in str(error)


def test_user_config_without_knowledge_bases_serves_the_args_set(
    demo_index: Path, catalogue_index: Path
) -> None:
    retriever = Retriever(
        RetrieverConfig(), [KnowledgeBaseConfig(name="prefectures", path=str(demo_index))]
    )
    added = {"prefectures": str(demo_index), "extra": str(catalogue_index)}
    asyncio.run(retriever.reconfigure({"knowledge_bases": added}))
    asyncio.run(retriever.reconfigure({"max_batch_size": 4}))
    assert [b["name"] for b in asyncio.run(retriever.knowledge_bases())] == ["prefectures"]


def test_an_index_that_takes_no_selector_is_searched_by_fetching_more(
    catalogue: FaissRetriever, catalogue_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where FAISS cannot filter (an index type without selectors, too many rows to
    score one by one), neighbours are fetched in growing numbers until enough match."""
    vector = query_vector(catalogue_index, "食についての資料")
    where = only("category", "is", "歴史")
    expected = catalogue.search(vector, 6, where)[0]
    monkeypatch.setattr(faiss_search, "faiss_parameters", lambda *_: None)
    monkeypatch.setattr(faiss_search, "EXACT_FILTERED_ROWS", 0)
    fetched = catalogue.search(vector, 6, where)[0]
    assert [h.score for h in fetched] == pytest.approx([h.score for h in expected])
    assert all(h.passage.metadata["category"] == "歴史" for h in fetched)
    assert len(catalogue.search(vector, 50, where)[0]) == 10


@pytest.mark.parametrize("as_cause", [True, False])
def test_the_ingress_recognises_it_as_ray_delivers_it(as_cause: bool) -> None:
    """Ray raises a replica's error as a RayTaskError that is also an instance of it, or
    that holds it as its cause."""
    wrapped = RayTaskError("search", "traceback", UnknownKnowledgeBase("nope", ["a"]))
    error = wrapped.as_instanceof_cause() if as_cause else wrapped
    found = unknown_knowledge_base(error)
    assert found is not None and found.name == "nope"
    assert unknown_knowledge_base(RayTaskError("search", "traceback", KeyError("x"))) is None


def test_a_base_named_by_its_root_keeps_the_version_loaded(
    demo_index: Path, catalogue_index: Path
) -> None:
    """The builder pins each base to its version directory; a user_config naming the
    same base by its root (and one more) does not load it again."""
    pinned = str(resolve_version_dir(demo_index))
    retriever = Retriever(RetrieverConfig(), [KnowledgeBaseConfig(name="prefectures", path=pinned)])
    engine = retriever.knowledge_base("prefectures").engine
    bases = [
        {"name": "prefectures", "path": str(demo_index), "description": "47都道府県"},
        {"name": "extra", "path": str(catalogue_index)},
    ]
    asyncio.run(retriever.reconfigure({"knowledge_bases": bases}))
    kept = retriever.knowledge_base("prefectures")
    assert kept.engine is engine and kept.config.description == "47都道府県"
