"""The library's version, in one place: the package's __init__, the contract's
library_version, the download User-Agent and every CLI's --version read it from here."""

__version__ = "0.1.0"
