"""Push an exported dataset folder to the Hugging Face Hub, with errors that say what to do.

    from curate.export import push_to_hub
    url = push_to_hub("datasets_out/frft-split-even-it1", "me/frft-split-even-it1", private=True)

A refused token (401), a namespace the token cannot write to (403), an unreachable Hub, HF_HUB_OFFLINE and a
missing huggingface_hub each get a message naming the fix. Whatever the libraries put in their errors, the
token never reaches curate's output.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CurateError
from .spec import CARD_FILE

HUB_INSTALL_FIX = "--hub needs huggingface_hub: pip install 'curate[hub]'."
NO_TOKEN_FIX = (
    "The Hub refused the push to {repo_id!r} (401 Unauthorized): {why}. Set HF_TOKEN to a token with write "
    "access (https://huggingface.co/settings/tokens) or run `hf auth login`, then try again."
)
NETWORK_FIX = (
    "Could not reach the Hugging Face Hub at {endpoint} ({error}). Check the network, or HF_ENDPOINT if you use "
    "a mirror; or export locally with --output PATH and upload the folder later."
)


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False, *,
                commit_message: str | None = None) -> str:
    """Create dataset repo `repo_id` (if new) and upload `folder` to it; returns the repo's URL.

    The token is whatever huggingface_hub finds (HF_TOKEN, then `hf auth login`'s file): curate never reads,
    prints or stores it.
    """
    try:
        from huggingface_hub import HfApi, constants
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
    except ImportError:
        raise CurateError(HUB_INSTALL_FIX) from None

    folder = Path(folder)
    if not (folder / CARD_FILE).is_file():
        raise CurateError(f"{folder} is not an exported dataset folder (it has no {CARD_FILE}): export it first "
                          "with `curate export SUBSET`.")
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=None)
        if private:  # exist_ok keeps an existing repo's visibility; never leave a --private push public
            api.update_repo_settings(repo_id, repo_type="dataset", private=True, token=None)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset", token=None,
                          commit_message=commit_message or f"curate export {folder.name}")
    except HFValidationError as e:
        raise CurateError(f"{repo_id!r} is not a valid Hub repo id ({e}). Use NAMESPACE/NAME, e.g. my-user/"
                          "frft-split-even-it1: letters, digits, '-', '_' and '.', at most 96 characters.") from None
    except OfflineModeIsEnabled:
        raise CurateError("HF_HUB_OFFLINE is set, so nothing can be pushed: unset it, or export locally with "
                          "--output PATH.") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise CurateError(_http_message(repo_id, status, e)) from None
    except Exception as e:
        if _is_network_error(e):
            error = _scrub(f"{type(e).__name__}: {e}")
            raise CurateError(NETWORK_FIX.format(endpoint=constants.ENDPOINT, error=error)) from None
        raise
    return str(url)


def _http_message(repo_id: str, status: int | None, e: Exception) -> str:
    server = _scrub(getattr(e, "server_message", None) or str(e).splitlines()[-1]).strip()
    if status == 401:
        from huggingface_hub import get_token

        why = "no token was found" if get_token() is None else "the token was not accepted"
        return NO_TOKEN_FIX.format(repo_id=repo_id, why=why)
    if status == 403:
        return (f"The Hub refused the push to {repo_id!r} (403 Forbidden: {server}): the token cannot write to the "
                f"namespace {repo_id.split('/')[0]!r}. Use a token with write access there, or push to your own "
                "namespace.")
    return f"The Hub answered {status} while pushing to {repo_id!r}: {server}"


def _is_network_error(e: BaseException) -> bool:
    """Connection refused, DNS failure, timeout: from httpx, requests or the socket layer, whichever is in use."""
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"TransportError", "ConnectError", "NetworkError", "TimeoutException", "ConnectionError",
                "ConnectTimeout", "Timeout"}:
        return True
    return isinstance(e, (ConnectionError, TimeoutError)) or (
        e.__cause__ is not None and _is_network_error(e.__cause__))


def _scrub(text: str) -> str:
    """Keep the token out of anything curate prints, whatever a library put in an error message."""
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception:
        token = None
    return text.replace(token, "hf_***") if token else text
