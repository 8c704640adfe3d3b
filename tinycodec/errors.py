"""The one exception type tinycodec raises for problems a user can cause."""


class TinyCodecError(Exception):
    """A bad or truncated .tcz file, an unsupported image, missing or tampered
    weights, an unknown filter, an image over the size limits, ...

    The message is one line meant for the user; the CLI prints it and exits 1.
    """


def describe_os_error(exc: OSError) -> str:
    """One line for an I/O failure: what happened and to which file ("No space left on device: out.png")."""
    return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\n``, ``\\x1b``, ``\\u2028``).

    The guard for every string that reaches a terminal: a file name, a field of a file, an
    error message built from either. A newline would split one error into two lines (the
    second a forged ``note:``) and an escape sequence would reach the terminal raw. The
    CLI passes every line it prints through this; messages that quote a file's bytes use it too.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] if c != "'" else c for c in text)
