"""Where results files come from: a Hugging Face dataset repo (huggingface_hub) or an fsspec folder."""
from __future__ import annotations

import hashlib
import posixpath
import shutil
import tempfile
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Callable, Protocol, TypeVar, cast

import fsspec

from eval_pipeline.errors import InvalidInput, NotFound, SourceAuthError, SourceUnavailable

if TYPE_CHECKING:
    from huggingface_hub import HfApi

T = TypeVar("T")

DEFAULT_HF_REPO = "meetkai/lm-eval-harness-result"


@dataclass(frozen=True)
class ListedFile:
    """A file a source lists."""

    path: str  # posix, relative to the source root
    size: int | None = None
    oid: str | None = None  # content id when the source has one (git blob or LFS sha256)


def safe_relative(path: str, field: str) -> str:
    """A path inside the source root, or InvalidInput naming `field`."""
    if not isinstance(path, str) or "\\" in path or "\x00" in path:
        raise InvalidInput(field, f"{path!r} is not a valid relative path")
    if path.startswith("/") or "://" in path:
        raise InvalidInput(field, f"{path!r} must be relative to the source root")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(field, f"{path!r} leaves the source ('..' is not allowed)")
    return "/".join(parts) + ("/" if path.endswith("/") and parts else "")


def _under_prefix(files: list[ListedFile], prefix: str) -> list[ListedFile]:
    return [f for f in files if f.path.startswith(prefix)] if prefix else files


class Source(Protocol):
    """A place results files are read from: `type` (huggingface | path), `repo` (the repo id or URL) and
    `revision` (the resolved commit; None where there is none)."""

    type: str
    repo: str
    revision: str | None

    @property
    def key(self) -> str:
        """The source's stable identity (hf://datasets/<repo>, or the URL), kept with what is imported from it."""
        ...

    def list(self, prefix: str) -> list[ListedFile]:
        """Every file whose path starts with `prefix`, sorted by path. Raises NotFound for a missing folder."""
        ...

    def open(self, f: ListedFile) -> AbstractContextManager[IO[bytes]]:
        """The file's bytes, to read in a `with` block."""
        ...

    def fingerprint(self, f: ListedFile) -> str:
        """The file's content id ("sha256:<hex>" or "git:<blob id>"): a changed file is a new one."""
        ...

    def close(self) -> None:
        """Forget credentials and delete what was downloaded."""
        ...


class HubSource:
    """A dataset repo at one commit. The caller's token lives in this object only, for this call."""

    type = "huggingface"

    def __init__(self, repo: str, revision: str, token: str | None, endpoint: str | None):
        from huggingface_hub import HfApi  # deferred: only Hub sources need huggingface_hub
        from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]  # a lazy export

        disable_progress_bars()
        self.repo = repo
        self._endpoint = endpoint
        self._token: str | bool = token or False  # False: never fall back to a stored or env token
        self._api: HfApi | None = HfApi(endpoint=endpoint, token=self._token)
        info = self._call(lambda: self._hub().dataset_info(repo, revision=revision), revision)
        self.revision = info.sha
        self._workdir = tempfile.mkdtemp(prefix="eval-pipeline-hub-")

    @property
    def key(self) -> str:
        """hf://datasets/<repo>."""
        return f"hf://datasets/{self.repo}"

    def _hub(self) -> HfApi:
        assert self._api is not None, "the source is closed"
        return self._api

    def _call(self, fn: Callable[[], T], revision: str | None = None, path: str | None = None) -> T:
        import httpx2  # huggingface_hub's HTTP client: its transport errors mean "unreachable"
        from huggingface_hub import errors as hf

        try:
            return fn()
        except hf.RevisionNotFoundError:
            raise NotFound("revision", f"{self.repo}@{revision}") from None
        except hf.EntryNotFoundError:
            raise NotFound("path", f"{self.repo}/{path}") from None
        except (hf.GatedRepoError, hf.RepositoryNotFoundError) as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403):
                hint = "the token was refused" if self._token else "no token was given"
                raise SourceAuthError(
                    f"the Hub answered {status} for dataset repo {self.repo}: {hint}; a private or "
                    "gated repo needs the caller's read token") from None
            raise NotFound("dataset repo", self.repo) from None
        except hf.HfHubHTTPError as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403):
                raise SourceAuthError(f"the Hub answered {status} for {self.repo}") from None
            raise SourceUnavailable(f"the Hub failed for {self.repo} (HTTP {status})") from None
        except (OSError, httpx2.TransportError) as e:  # connection refused, DNS, timeouts
            raise SourceUnavailable(f"cannot reach the Hub for {self.repo}: {type(e).__name__}") from None

    def list(self, prefix: str) -> list[ListedFile]:
        """Every file of the repo at the commit whose path starts with `prefix`, sorted by path, with its size
        and content id. Raises NotFound (path, revision, repo), SourceAuthError or SourceUnavailable."""
        from huggingface_hub.hf_api import RepoFile  # deferred: only Hub sources need huggingface_hub

        folder: str | None
        folder = prefix if prefix.endswith("/") else posixpath.dirname(prefix)
        folder = folder.rstrip("/") or None
        entries = self._call(lambda: list(self._hub().list_repo_tree(
            self.repo, path_in_repo=folder, recursive=True, revision=self.revision, repo_type="dataset",
        )), self.revision, folder)
        files = [ListedFile(e.path, e.size, "sha256:" + e.lfs.sha256 if e.lfs else "git:" + e.blob_id)
                 for e in entries if isinstance(e, RepoFile)]
        return sorted(_under_prefix(files, prefix), key=lambda f: f.path)

    def _download(self, f: ListedFile) -> str:
        from huggingface_hub import hf_hub_download  # deferred: only Hub sources need huggingface_hub

        return self._call(lambda: hf_hub_download(
            self.repo, f.path, repo_type="dataset", revision=self.revision, token=self._token,
            endpoint=self._endpoint, cache_dir=self._workdir,
        ), self.revision, f.path)

    def open(self, f: ListedFile) -> IO[bytes]:
        """The file, downloaded into this source's temporary folder first. Raises as list() does."""
        return open(self._download(f), "rb")

    def fingerprint(self, f: ListedFile) -> str:
        """The listed content id (LFS "sha256:<hex>" or "git:<blob id>"); "" when the listing had none."""
        return f.oid or ""

    def close(self) -> None:
        """Drop the token and the client, and delete the downloads; the source is unusable after."""
        self._token = False
        self._api = None
        shutil.rmtree(self._workdir, ignore_errors=True)


class FsspecSource:
    """A local folder or an fsspec URL (file://, s3://); content hashes stand in for commits."""

    type = "path"
    revision: str | None = None

    def __init__(self, url: str, s3_endpoint_url: str | None = None):
        options = {"endpoint_url": s3_endpoint_url} if url.startswith("s3://") and s3_endpoint_url else {}
        self.repo = url
        self._fs, root = fsspec.core.url_to_fs(url, **options)
        self._root = root.rstrip("/")
        if not self._fs.isdir(self._root):
            raise NotFound("source folder", url)
        self._hashes: dict[str, str] = {}

    @property
    def key(self) -> str:
        """The URL without a trailing slash."""
        return self.repo.rstrip("/")

    def list(self, prefix: str) -> list[ListedFile]:
        """Every file below the folder of `prefix` whose path starts with it, sorted by path, with its size.
        Raises NotFound when that folder does not exist."""
        folder = prefix if prefix.endswith("/") else posixpath.dirname(prefix)
        base = f"{self._root}/{folder.rstrip('/')}" if folder.strip("/") else self._root
        if not self._fs.isdir(base):
            raise NotFound("path", f"{self.repo}/{folder}")
        found = self._fs.find(base, detail=True)
        files = [ListedFile(p[len(self._root) + 1:], info.get("size"))
                 for p, info in found.items() if info.get("type") == "file"]
        return sorted(_under_prefix(files, prefix), key=lambda f: f.path)

    def open(self, f: ListedFile) -> IO[bytes]:
        """The file, opened for binary reading through fsspec."""
        return cast(IO[bytes], self._fs.open(f"{self._root}/{f.path}", "rb"))  # fsspec is untyped

    def fingerprint(self, f: ListedFile) -> str:
        """"sha256:<hex>" of the file's content, computed once per path and source."""
        if f.path not in self._hashes:
            h = hashlib.sha256()
            with self.open(f) as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    h.update(block)
            self._hashes[f.path] = "sha256:" + h.hexdigest()
        return self._hashes[f.path]

    def close(self) -> None:
        """Nothing to release: an fsspec source holds no credentials or downloads."""
        pass
