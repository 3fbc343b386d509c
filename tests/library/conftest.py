"""The fault fixtures (btrfs loop image, interceptor mounts) for the library's tests."""

from tests.faults.conftest import btrfs, mounted

__all__ = ["btrfs", "mounted"]
