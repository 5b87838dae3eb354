"""Writing and checking artifacts: atomic files and directories, sha256 checksums (the bottom floor: imports
nothing of ebr, used by every step and the server)."""
