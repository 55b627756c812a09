"""Helpers shared by the data-loader tests: pickles that must never be run, IDX files."""

import os
import struct

import pytest


class _Evil:
    """Unpickling this runs a shell command (what the restricted unpickler must refuse)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture
def evil():
    """The class whose pickle runs ``os.system(command)``; instantiate it with the command."""
    return _Evil


def _idx_bytes(array, type_code=0x08, magic=None):
    header = magic if magic is not None else struct.pack(">HBB", 0, type_code, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(">u1").tobytes()


@pytest.fixture
def idx_bytes():
    """``idx_bytes(array, type_code=0x08, magic=None)``: the IDX file of a uint8 array (header
    ``magic`` instead of the right one when given)."""
    return _idx_bytes
