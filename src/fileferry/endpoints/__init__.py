"""Endpoints: the S3 source and the delivery destinations, chosen by URL scheme."""

from fileferry.endpoints.base import (
           ByteStream,
           Capabilities,
           Destination,
           ObjectInfo,
           Source,
           Writer,
)
from fileferry.endpoints.registry import connect_destination

__all__ = ["ByteStream", "Capabilities", "Destination", "ObjectInfo", "Source", "Writer",
           "connect_destination"]
