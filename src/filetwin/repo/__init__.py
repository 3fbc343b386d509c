"""The content-addressed repository: chunks, manifests, durability, checking."""

from __future__ import annotations

from filetwin.repo.check import Problem, check_repository
from filetwin.repo.manifest import Manifest, entry_key
from filetwin.repo.repository import Repository

__all__ = ["Manifest", "Problem", "Repository", "check_repository", "entry_key"]
