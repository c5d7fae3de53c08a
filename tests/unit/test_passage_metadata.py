"""Document metadata kept from the corpus through a real build, the passage store and
the chat API's sources; malformed records in a build's summary or failing it."""

from __future__ import annotations

import bz2
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from deployments.embedder.config import HashingEmbedderConfig
from deployments.index.format import OFFSETS_FILE, PASSAGES_FILE, list_versions, resolve_version_dir
from deployments.index.passages import PassageStore, PassageStoreWriter
from deployments.ingress.app import create_app
from deployments.ingress.config import IngressConfig
from deployments.passage import Passage
from serve.cli import main
from serve.indexing.build import BuildSettings, build_index
from serve.indexing.corpus import CorpusProblems, wikipedia_url
from tests.support import RETRIEVAL, local_stages, parse_sse

WIKI = [
    {
        "id": 101,
        "pageid": 1283,
        "revid": 93912873,
        "title": "香川県",
        "section": "__LEAD__",
        "text": "香川県は日本の四国地方に位置する県である。県庁所在地は高松市である。",
    },
    {
        "id": 102,
        "pageid": 1283,
        "revid": 93912873,
        "title": "香川県",
        "section": "地理",
        "text": "香川県は面積が日本で最も小さい都道府県である。" * 12,
    },
    {
        "id": 201,
        "pageid": 2210,
        "revid": 94001122,
        "title": "沖縄県",
        "section": "__LEAD__",
        "text": "沖縄県は日本の最南端に位置する県である。県庁所在地は那覇市である。",
    },
]
HANDBOOK = "---\nupdated: 2024-04-01\n---\n# 休暇\n\n年次有給休暇は年に二十日である。\n"


def write_corpus(folder: Path, malformed: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in WIKI]
    if malformed:
        lines.insert(1, '{"id": 150, "title": "壊れた行"')
    data = ("\n".join(lines) + "\n").encode("utf-8")
    (folder / "jawiki-passages.jsonl.bz2").write_bytes(bz2.compress(data))
    (folder / "handbook.md").write_text(HANDBOOK, encoding="utf-8")
    return folder


def build(corpus: Path, root: Path, **settings: object) -> None:
    build_index(
        [corpus],
        root,
        HashingEmbedderConfig(),
        BuildSettings.model_validate(
            {"progress": False, "chunking": {"max_chars": 200, "overlap_chars": 40}, **settings}
        ),
    )


@pytest.fixture
def metadata_index(tmp_path: Path) -> Path:
    root = tmp_path / "index"
    build(write_corpus(tmp_path / "corpus"), root)
    return root


def test_build_keeps_document_fields_in_the_passage_store(metadata_index: Path) -> None:
    store = PassageStore(resolve_version_dir(metadata_index))
    try:
        passages = {p.id: p for p in store}
    finally:
        store.close()
    assert passages["101"].metadata == {
        "source": "jawiki-passages.jsonl.bz2",
        "pageid": 1283,
        "revid": 93912873,
        "section": "__LEAD__",
    }
    assert passages["101"].url == wikipedia_url("香川県")
    assert passages["201"].metadata["pageid"] == 2210
    chunks = [p for p in passages.values() if p.doc_id == "102"]
    assert len(chunks) > 1 and all(p.id.startswith("102#") for p in chunks)
    assert all(p.metadata["section"] == "地理" and p.metadata["revid"] == 93912873 for p in chunks)
    handbook = passages["handbook.md"]
    assert handbook.title == "休暇" and handbook.text == "年次有給休暇は年に二十日である。"
    assert handbook.metadata == {"source": "handbook.md", "updated": "2024-04-01"}


def test_a_store_written_without_metadata_reads_it_as_empty(tmp_path: Path) -> None:
    with PassageStoreWriter(tmp_path) as writer:
        writer.add(Passage("a", "a", "題", "本文。"))
        writer.add(Passage("b", "b", "題", "本文。", metadata={"pageid": 3, "stub": True}))
        writer.close()
    lines = (tmp_path / PASSAGES_FILE).read_text("utf-8").splitlines()
    assert "metadata" not in json.loads(lines[0]), "an empty one is not written"
    # A line as versions written before metadata existed have it.
    old = json.dumps({"id": "c", "doc_id": "c", "title": "", "text": "古い。", "url": None})
    (tmp_path / PASSAGES_FILE).write_text("\n".join([*lines, old]) + "\n", "utf-8")
    offsets = np.cumsum([0, *(len(line.encode()) + 1 for line in [*lines, old])])
    np.save(tmp_path / OFFSETS_FILE, offsets.astype(np.int64))
    store = PassageStore(tmp_path)
    try:
        assert [p.metadata for p in store] == [{}, {"pageid": 3, "stub": True}, {}]
        assert store[1] == Passage("b", "b", "題", "本文。", None, {"pageid": 3, "stub": True})
    finally:
        store.close()


def test_malformed_lines_are_counted_or_fail_a_strict_build(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", malformed=True)
    root = tmp_path / "index"
    problems = CorpusProblems()
    manifest = build_index(
        [corpus], root, HashingEmbedderConfig(), BuildSettings(progress=False), problems
    )
    assert (
        problems.count == 1
        and "jawiki-passages.jsonl.bz2:2: not valid JSON" in (problems.examples[0])
    )
    assert manifest.num_documents == 4
    with pytest.raises(ValueError, match=r"jawiki-passages\.jsonl\.bz2:2: not valid JSON"):
        build(corpus, root, strict=True)
    assert list_versions(root) == [manifest.version], "a failed build publishes nothing"
    assert not list(root.glob(".building-*"))


def test_cli_summary_counts_skipped_records_and_strict_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_corpus(tmp_path / "corpus", malformed=True)
    out = tmp_path / "index"
    assert main(["index", "build", str(corpus), "--out", str(out), "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "from 4 documents" in summary and "1 malformed records skipped" in summary
    assert main(["index", "build", str(corpus), "--out", str(out), "--quiet", "--strict"]) == 2
    error = capsys.readouterr().err
    assert "jawiki-passages.jsonl.bz2:2: not valid JSON" in error


@pytest.fixture
def client(metadata_index: Path) -> Iterator[TestClient]:
    config = IngressConfig(max_input_chars=2000)
    app = create_app(local_stages(metadata_index), config, RETRIEVAL)
    with TestClient(app) as test_client:
        yield test_client


QUESTION = {"messages": [{"role": "user", "content": "香川県の県庁所在地はどこですか？"}]}


def test_chat_sources_carry_the_metadata(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json=QUESTION)
    assert response.status_code == 200
    sources = {s["passage_id"]: s for s in response.json()["sources"]}
    kagawa = sources["101"]
    assert kagawa["cited"] and kagawa["url"] == wikipedia_url("香川県")
    assert kagawa["metadata"] == {
        "source": "jawiki-passages.jsonl.bz2",
        "pageid": 1283,
        "revid": 93912873,
        "section": "__LEAD__",
    }
    assert all(s["metadata"]["source"] for s in sources.values())


def test_streamed_sources_carry_the_metadata(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat/completions", json={**QUESTION, "stream": True}) as r:
        events = parse_sse(r.read().decode())
    last = events[-2]
    sources = {s["passage_id"]: s for s in last["sources"]}
    assert sources["101"]["metadata"]["pageid"] == 1283
