"""W&B run settings shared by the CLI and the examples: offline unless the user configured W&B."""

from __future__ import annotations

import os

__all__ = ["wandb_init_kwargs", "wandb_mode"]


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; ``"online"`` when an API key or a netrc login exists; else ``"offline"``.

    Only the presence of credentials is checked; their values are never read into logs or files.

    Example:
        >>> import os
        >>> os.environ["WANDB_MODE"] = "disabled"
        >>> wandb_mode()
        'disabled'
        >>> del os.environ["WANDB_MODE"]
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        import netrc

        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].rstrip("/")
        if netrc.netrc().authenticators(host):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def wandb_init_kwargs() -> dict[str, str]:
    """``mode`` and (when ``WANDB_DIR`` is set) ``dir`` for ``wandb.init``, read at call time.

    Passing ``dir`` explicitly matters in long-lived processes: wandb caches its settings at the
    first ``wandb.init``, so a later change of ``WANDB_DIR`` would otherwise be ignored.
    """
    kwargs = {"mode": wandb_mode()}
    if os.environ.get("WANDB_DIR"):
        kwargs["dir"] = os.environ["WANDB_DIR"]
    return kwargs
