"""The one exception type tinycodec raises for problems a user can cause."""


class TinyCodecError(Exception):
    """A bad or truncated .tcz file, an unsupported image, missing or tampered
    weights, an unknown filter, an image over the size limits, ...

    The message is one line meant for the user; the CLI prints it and exits 1.
    """


def describe_os_error(exc: OSError) -> str:
    """One line for an I/O failure: what happened and to which file ("No space left on device: out.png")."""
    return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
