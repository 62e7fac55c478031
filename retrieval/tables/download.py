"""Fetching a public dataset archive once: download with a progress bar, a checksum that must
match, and an extraction that refuses member paths leaving the folder. Holds no parsing
(readers/ parse the files) and nothing about the CLI.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from retrieval.errors import ConfigError, MissingInputError
from retrieval.tables.errors import DataError
from retrieval.tables.store import atomic_dir

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
# md5 of each public BEIR zip as the BEIR README publishes it (github.com/beir-cellar/beir,
# "Available Datasets"); a zip whose md5 differs is refused, so a truncated or changed file
# never becomes a dataset.
BEIR_MD5 = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}
DEFAULT_TIMEOUT_S = 60.0
_BLOCK_BYTES = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Checksum:
    """The digest a downloaded file must have: ``algorithm`` is md5 or sha256."""

    algorithm: str
    hexdigest: str

    @classmethod
    def expected(cls, name: str, md5: str | None = None, sha256: str | None = None) -> Checksum:
        """The user's ``sha256`` or ``md5`` if given, else the published md5 of BEIR ``name``."""
        if md5 and sha256:
            raise ConfigError("give --md5 or --sha256, not both")
        for algorithm, value, length in (("sha256", sha256, 64), ("md5", md5, 32)):
            if value:
                if not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", value):
                    raise ConfigError(f"--{algorithm} {value!r} is not {length} hex digits")
                return cls(algorithm, value.lower())
        if name not in BEIR_MD5:
            raise ConfigError(
                f"no published checksum known for BEIR dataset {name!r} "
                f"(known: {', '.join(sorted(BEIR_MD5))}); pass --md5 or --sha256 to fetch it"
            )
        return cls("md5", BEIR_MD5[name])

    def check(self, path: Path, source: str) -> None:
        """DataError naming ``source`` unless ``path`` has this digest."""
        digest = hashlib.new(self.algorithm)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_BLOCK_BYTES), b""):
                digest.update(block)
        if digest.hexdigest() != self.hexdigest:
            raise DataError(
                source,
                f"{self.algorithm} {digest.hexdigest()} is not the expected {self.hexdigest}: the "
                f"download is corrupt or the file changed; nothing was kept (if you trust it, "
                f"pass --{self.algorithm} {digest.hexdigest()})",
            )


def download_beir(
    name: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    url: str | None = None,
    show_progress: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """BEIR dataset ``name`` as the folder ``dest/name``, downloaded and unzipped if not there.

    A folder that already holds ``corpus.jsonl`` is used as it is. Otherwise the zip (from
    ``url``, BEIR's public server by default) must match ``sha256`` / ``md5`` (BEIR's published
    md5 by default) before anything is extracted, and the folder appears only once the whole
    archive is unpacked: a failure leaves nothing in ``dest``, not even ``dest`` if it was new.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(f"not a BEIR dataset name: {name!r}")
    folder = Path(dest) / name
    if (folder / "corpus.jsonl").is_file():
        return folder
    if folder.exists():  # never replace something the user put there
        raise ConfigError(f"{folder} exists but holds no corpus.jsonl; move it away first")
    checksum = Checksum.expected(name, md5, sha256)
    url = url or BEIR_URL.format(name=name)
    with atomic_dir(folder) as tmp:
        archive, unzipped = tmp / ".download.zip", tmp / ".unzipped"
        fetch(url, archive, show_progress, timeout_s, name)
        checksum.check(archive, url)
        extract_zip(archive, unzipped, url)
        top = unzipped / name
        if not (top / "corpus.jsonl").is_file():
            raise DataError(url, f"the zip holds no {name}/corpus.jsonl (not a BEIR dataset zip)")
        for entry in top.iterdir():
            os.replace(entry, tmp / entry.name)
        archive.unlink()
        shutil.rmtree(unzipped)
    return folder


def fetch(
    url: str,
    path: Path,
    show_progress: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    name: str = "",
) -> None:
    """Stream ``url`` into ``path`` with a byte progress bar; MissingInputError if unreachable.

    The error says how to do without the download: offline machines are the usual cause.
    """
    with open(path, "wb") as out:
        try:
            response = urllib.request.urlopen(url, timeout=timeout_s)
        except OSError as err:  # URLError, HTTPError, timeouts and refused connections
            raise _unreachable(url, err, name) from None
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=PurePosixPath(url).name,
            disable=not show_progress,
        )
        with response, bar:
            while True:
                try:
                    block = response.read(_BLOCK_BYTES)
                except OSError as err:  # the connection dropped half way
                    raise _unreachable(url, err, name) from None
                if not block:
                    break
                out.write(block)
                bar.update(len(block))


def _unreachable(url: str, err: OSError, name: str) -> MissingInputError:
    reason = getattr(err, "reason", None) or err
    if isinstance(err, urllib.error.HTTPError):
        reason = f"HTTP {err.code} {err.reason}"
    return MissingInputError(
        f"cannot download {url} ({reason}); offline, copy the BEIR folder of "
        f"{name or 'the dataset'} (corpus.jsonl, queries.jsonl, qrels/) onto this machine and "
        "set data.beir in the config (or --dir / --beir) to it"
    )


def extract_zip(archive: Path, dest: Path, source: str) -> None:
    """Unzip ``archive`` into ``dest``, refusing the whole archive (before writing anything) if
    a member's path is absolute or climbs out of ``dest`` ("zip slip")."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                name = member.filename
                parts = PurePosixPath(name.replace("\\", "/")).parts
                target = (root / name).resolve()
                if name.startswith(("/", "\\")) or ".." in parts or not target.is_relative_to(root):
                    raise DataError(source, f"zip member {name!r} leaves the folder; refused")
            zf.extractall(dest)
    except zipfile.BadZipFile as err:
        raise DataError(source, f"not a zip archive ({err})") from None
