"""FileFerry: verified, ticketed, auditable hand-offs of S3 objects to SFTP partners."""

from fileferry.errors import FileFerryError

__all__ = ["FileFerryError", "__version__"]
__version__ = "0.1.0"
