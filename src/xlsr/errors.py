"""One error type for everything a user can get wrong; the CLI prints it as one line."""


class XlsrError(ValueError):
    """Bad input from a user: a file, a field or an argument. The message names it and says what is wrong."""


class AudioError(XlsrError):
    """An audio file that cannot be read or holds unusable samples."""


class ManifestError(XlsrError):
    """A manifest line or file that does not follow the JSONL manifest format."""


class CheckpointError(XlsrError):
    """A checkpoint that is missing, truncated, of another format, or inconsistent with its config."""


class SettingsError(XlsrError):
    """An error in a command's settings (its options, --config YAML, recipe): a function of the command line and the
    files it names, so every process of a torchrun job on one node meets it alike (the CLI says it once per node)."""


class TrainingInterrupted(XlsrError):
    """A training run that Ctrl-C or SIGTERM stopped before its max_updates (it saved and can resume), inside a
    command that goes on to use it (the demo), or whose signal came as it ended (it finished): the CLI exits with
    status 130, as `xlsr pretrain` does when stopped."""


def listing(items: list[str], limit: int = 8) -> str:
    """'a, b, c and N more': at most `limit` items, so that an error message stays one readable line."""
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def require_seed(seed, field: str = "--seed") -> int:
    """`seed` as given, or one XlsrError line: numpy's generators take whole numbers 0 or more only."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise XlsrError(f"{field}: a whole number 0 or more, got {seed!r}")
    return seed
