"""Zip uploads (hostile input): every entry checked before anything is extracted, and the bytes actually
inflated counted while extracting."""
from __future__ import annotations

import io
import os
import re
import stat
import time
import zipfile
import zlib
from pathlib import Path

from recipe_core.errors import BadInput
from recipe_core.units import human_bytes

MAX_ZIP_BYTES = 500 << 20  # uncompressed size of a zip upload, declared and actually extracted
MAX_ZIP_FILES = 10_000
EXTRACT_BLOCK = 1 << 20  # bytes per read when extracting
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # bzip2/lzma can inflate unboundedly in one read


def open_zip(data) -> zipfile.ZipFile:
    """The upload (bytes or a binary file) as a zip archive, or one line saying it is not one."""
    stream = io.BytesIO(bytes(data)) if isinstance(data, (bytes, bytearray, memoryview)) else data
    stream.seek(0)
    if stream.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise BadInput("the upload is not a zip archive")
    stream.seek(0)
    try:
        return zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise BadInput("the zip archive is corrupt or truncated") from None


def extract_checked(zf: zipfile.ZipFile, dest: Path, max_bytes: int, max_files: int) -> None:
    """Check every entry, then extract them all under dest."""
    _extract(zf, _checked_entries(zf, max_bytes, max_files), dest, max_bytes)


def _checked_entries(zf: zipfile.ZipFile, max_bytes: int, max_files: int) -> list[tuple[zipfile.ZipInfo, tuple]]:
    """The file entries with their path parts, after refusing anything unsafe; nothing is extracted yet."""
    infos = zf.infolist()
    if len(infos) > max_files:
        raise BadInput(f"the zip archive has {len(infos)} entries, more than the limit of {max_files}")
    entries, seen, declared = [], set(), 0
    for info in infos:
        shown = repr(info.filename[:100])
        if info.flag_bits & 0x1:
            raise BadInput(f"the zip archive is encrypted ({shown}); upload an unencrypted zip")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BadInput(f"the zip entry {shown} is a symbolic link; links are not accepted")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise BadInput(f"the zip entry {shown} is not a regular file or folder")
        name = info.filename.replace("\\", "/")  # some Windows tools write backslashes
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise BadInput(f"the zip entry {shown} has control characters in its name")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise BadInput(f"the zip entry {shown} has an absolute path")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise BadInput(f"the zip entry {shown} points outside the archive (..)")
        if info.is_dir() or not parts:
            continue
        if info.compress_type not in ZIP_METHODS:
            raise BadInput(f"the zip entry {shown} uses a compression other than deflate; re-create the zip "
                           "with a standard zip tool")
        if parts in seen:
            raise BadInput(f"the zip archive holds {shown} twice")
        seen.add(parts)
        declared += info.file_size
        if declared > max_bytes:
            raise BadInput(f"the zip archive unpacks to more than {human_bytes(max_bytes)}; refused as a possible "
                           "compression bomb")
        entries.append((info, parts))
    return entries


def _extract(zf: zipfile.ZipFile, entries, dest: Path, max_bytes: int) -> None:
    """Write the entries under dest, counting the bytes actually inflated (the declared sizes can lie)."""
    total = 0
    for info, parts in entries:
        target = dest.joinpath(*parts)
        shown = repr(info.filename[:100])
        if dest not in target.parents:  # cannot happen after the checks: a last line of defence
            raise BadInput(f"the zip entry {shown} points outside the archive")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "xb") as out:
                while chunk := src.read(EXTRACT_BLOCK):
                    written += len(chunk)
                    total += len(chunk)
                    if total > max_bytes or written > info.file_size:
                        raise BadInput(f"the zip archive unpacks to more than {human_bytes(max_bytes)} or more than it "
                                       "declares; refused as a possible compression bomb")
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError):
            raise BadInput(f"the zip entry {shown} is corrupt") from None
        except OSError as e:
            raise BadInput(f"the zip entry {shown} could not be unpacked ({type(e).__name__}); does it clash "
                           "with another entry's folder?") from None
        t = _zip_time(info.date_time)
        if t is not None:
            os.utime(target, (t, t))  # Lightning points take the csv's mtime: keep the one in the zip


def _zip_time(date_time) -> float | None:
    try:
        return time.mktime((*date_time, 0, 0, -1))  # zip times are local, without a zone
    except (OverflowError, ValueError):
        return None
