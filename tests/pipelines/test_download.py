"""`rqa download beir` and `rqa prepare beir --name` against a local HTTP server on 127.0.0.1.

The server hands out zips built here: a tiny BEIR folder, a corrupt copy (checksum mismatch),
and archives whose member names try to leave the folder. Checksums are computed here with
hashlib, independently of the code under test.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.cli import main
from retrieval.errors import ConfigError
from retrieval.tables import read_table
from retrieval.tables.download import BEIR_URL, Checksum, download_beir

DOCS = {"d1": "Aspirin lowers fever.", "d2": "Vitamin C and colds.", "d3": "Sleep and memory."}
QUERIES = {"q1": "does aspirin reduce fever", "q2": "is sleep good for memory"}
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n"


def rqa(*args) -> int:
    return main([str(arg) for arg in args])


def beir_files(name: str = "small") -> dict[str, bytes]:
    """Member name -> bytes of a tiny BEIR zip laid out as BEIR's are (``name/corpus.jsonl``)."""
    corpus = "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in DOCS.items())
    queries = "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items())
    return {
        f"{name}/corpus.jsonl": corpus.encode(),
        f"{name}/queries.jsonl": queries.encode(),
        f"{name}/qrels/test.tsv": QRELS.encode(),
    }


def write_zip(path: Path, members: dict[str, bytes]) -> str:
    """Write the zip; return its sha256."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves ``tmp_path/site`` on 127.0.0.1 (a free port) for the test; counts the requests."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    site = tmp_path / "site"
    site.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(site), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(site=site, url=f"http://127.0.0.1:{httpd.server_port}", hits=requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_fetches_checks_unzips_and_reuses(server, tmp_path, capsys):
    write_zip(server.site / "small.zip", beir_files())
    md5 = hashlib.md5((server.site / "small.zip").read_bytes()).hexdigest()
    data = tmp_path / "data"

    code = rqa("download", "beir", "--name", "small", "--out", data,
               "--url", f"{server.url}/small.zip", "--md5", md5)  # fmt: skip

    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(data / "small")
    assert server.hits == ["/small.zip"]
    assert files_under(data) == {
        "small",
        "small/corpus.jsonl",
        "small/queries.jsonl",
        "small/qrels",
        "small/qrels/test.tsv",
    }  # no archive, no temporary folder left beside
    for name, content in beir_files().items():
        assert (data / name).read_bytes() == content
    # there already: used as it is, with no download and no checksum needed
    assert rqa("download", "beir", "--name", "small", "--out", data, "--url", server.url) == 0
    assert server.hits == ["/small.zip"]


def test_prepare_beir_name_downloads_then_prepares(server, tmp_path):
    sha256 = write_zip(server.site / "small.zip", beir_files())
    out = tmp_path / "work" / "tables"

    code = rqa("prepare", "beir", "--name", "small", "--out", out,
               "--url", f"{server.url}/small.zip", "--sha256", sha256)  # fmt: skip

    assert code == 0
    assert (tmp_path / "work" / "raw" / "small" / "corpus.jsonl").is_file()
    assert sorted(read_table(out / "corpus")["pid"].to_pylist()) == sorted(DOCS)
    assert sorted(read_table(out / "qrels-test")["qid"].to_pylist()) == ["q1", "q2"]


@pytest.mark.parametrize("existing", [False, True])
def test_checksum_mismatch_is_one_line_and_keeps_nothing(server, tmp_path, capsys, existing):
    good = write_zip(tmp_path / "good.zip", beir_files())
    files = beir_files()
    files["small/corpus.jsonl"] = files["small/corpus.jsonl"][:-20]  # a changed file
    got = write_zip(server.site / "small.zip", files)
    data = tmp_path / "data"
    if existing:
        (data / "other").mkdir(parents=True)
    before = files_under(data) if existing else None

    code = rqa("download", "beir", "--name", "small", "--out", data,
               "--url", f"{server.url}/small.zip", "--sha256", good)  # fmt: skip

    assert code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # the progress bar may stand above it
    assert last.startswith("rqa download: error: ") and "Traceback" not in err
    assert f"sha256 {got} is not the expected {good}" in last
    assert files_under(data) == before if existing else not data.exists()


@pytest.mark.parametrize(
    "evil",
    ["../evil.txt", "small/../../evil.txt", "/tmp/rqa-zip-slip-evil.txt", "..\\evil.txt"],
)
def test_member_paths_leaving_the_folder_are_refused(server, tmp_path, capsys, evil):
    members = {**beir_files(), evil: b"should never be written"}
    sha256 = write_zip(server.site / "small.zip", members)
    before = files_under(tmp_path)

    code = rqa("download", "beir", "--name", "small", "--out", tmp_path / "data",
               "--url", f"{server.url}/small.zip", "--sha256", sha256)  # fmt: skip

    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("rqa download: error: ") and "leaves the folder; refused" in last
    assert files_under(tmp_path) == before  # nothing inside nor outside the destination
    assert not Path("/tmp/rqa-zip-slip-evil.txt").exists()


def test_offline_says_how_to_use_a_local_copy(tmp_path, capsys):
    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    code = rqa("download", "beir", "--name", "scifact", "--out", tmp_path / "data",
               "--url", f"http://127.0.0.1:{port}/scifact.zip")  # fmt: skip

    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("rqa download: error: cannot download http://127.0.0.1:")
    assert "set data.beir in the config" in err
    assert not (tmp_path / "data").exists()


def test_http_error_is_one_line(server, tmp_path):
    with pytest.raises(Exception, match="HTTP 404") as info:
        download_beir("nope", tmp_path, md5="0" * 32, url=f"{server.url}/nope.zip")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == [server.site]


def test_a_zip_without_the_dataset_folder_is_refused(server, tmp_path):
    sha256 = write_zip(server.site / "other.zip", beir_files("other"))
    with pytest.raises(Exception, match="no small/corpus.jsonl"):
        download_beir("small", tmp_path / "data", sha256=sha256, url=f"{server.url}/other.zip")
    assert not (tmp_path / "data").exists()


def test_published_checksums_and_bad_requests(tmp_path):
    assert Checksum.expected("scifact") == Checksum("md5", "5f7d1de60b170fc8027bb7898e2efca1")
    assert Checksum.expected("scifact", sha256="A" * 64) == Checksum("sha256", "a" * 64)
    assert BEIR_URL.format(name="scifact").endswith("/thakur/BEIR/datasets/scifact.zip")
    with pytest.raises(ConfigError, match="no published checksum"):
        Checksum.expected("my-own-set")
    with pytest.raises(ConfigError, match="32 hex digits"):
        Checksum.expected("scifact", md5="abc")
    with pytest.raises(ConfigError, match="not a BEIR dataset name"):
        download_beir("../etc", tmp_path)
    (tmp_path / "scifact").mkdir()
    (tmp_path / "scifact" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no corpus.jsonl"):
        download_beir("scifact", tmp_path)  # never replaces a folder it did not make
    assert (tmp_path / "scifact" / "notes.txt").read_text() == "mine"
