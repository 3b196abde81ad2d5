"""The tmp policy, route by route: each blocked operation leaves no trace on disk."""

from __future__ import annotations

import errno
import glob
import io
import logging
import mmap
import os
import posix
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest

from lambdaguard import FileViolation, Tmp, Violation, guard
from tests.files.conftest import violation_lines


@pytest.fixture
def existing(tmp_path: Path) -> Path:
    """A file that was under /tmp before the guard."""
    path = tmp_path / "existing.txt"
    path.write_text("before")
    return path


def _assert_one_block(capsys: pytest.CaptureFixture[str], action: str, target: Path | str) -> None:
    lines = violation_lines(capsys.readouterr().out)
    assert [(v["policy"], v["mode"], v["action"]) for v in lines][:1] == [("tmp", "block", action)]
    assert lines[0]["target"] == os.path.realpath(target)


class TestOpening:
    def test_open_for_writing_creates_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """open(path, "w") under /tmp raises before the file exists."""
        target = tmp_path / "new.txt"
        with guard(tmp="block"), pytest.raises(FileViolation):
            open(target, "w")  # noqa: SIM115
        assert not target.exists()
        _assert_one_block(capsys, "write", target)

    def test_open_for_reading_returns_no_content(
        self, existing: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """open(path).read() under /tmp raises instead of returning the content."""
        got = None
        with guard(tmp="block"), pytest.raises(FileViolation):
            got = open(existing).read()  # noqa: SIM115
        assert got is None
        _assert_one_block(capsys, "read", existing)

    def test_violation_is_a_permission_error_with_eacces(self, existing: Path) -> None:
        """The exception is a PermissionError (errno EACCES, filename set) and a Violation."""
        with guard(tmp="block"), pytest.raises(PermissionError) as caught:
            existing.read_text()
        assert isinstance(caught.value, Violation)
        assert caught.value.errno == errno.EACCES
        assert caught.value.filename == str(existing)

    def test_io_open_and_pathlib_write_create_nothing(self, tmp_path: Path) -> None:
        """io.open and Path.write_text/write_bytes/touch are blocked before creating."""
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                io.open(tmp_path / "a", "w")  # noqa: SIM115, UP020
            with pytest.raises(FileViolation):
                (tmp_path / "b").write_text("x")
            with pytest.raises(FileViolation):
                (tmp_path / "c").write_bytes(b"x")
            with pytest.raises(FileViolation):
                (tmp_path / "d").touch()
        assert list(tmp_path.iterdir()) == []

    def test_os_open_with_create_flag_creates_nothing(self, tmp_path: Path) -> None:
        """os.open(O_CREAT) under /tmp is blocked."""
        with guard(tmp="block"), pytest.raises(FileViolation):
            os.open(tmp_path / "n", os.O_WRONLY | os.O_CREAT)
        assert not (tmp_path / "n").exists()

    def test_io_fileio_creates_nothing(self, tmp_path: Path) -> None:
        """io.FileIO (a C type the patches cannot touch) is stopped by the audit hook."""
        with guard(tmp="block"), pytest.raises(FileViolation):
            io.FileIO(tmp_path / "f", "w")
        assert not (tmp_path / "f").exists()

    def test_posix_open_and_restored_original_are_still_blocked(self, tmp_path: Path) -> None:
        """Going around the patches (posix.open, the wrapped original) meets the audit hook."""
        original_open = getattr(open, "__wrapped__", open)
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                posix.open(str(tmp_path / "p"), os.O_WRONLY | os.O_CREAT)
            with pytest.raises(FileViolation):
                original_open(tmp_path / "q", "w")
        assert list(tmp_path.iterdir()) == []

    def test_exclusive_temporary_file_in_tmp_is_blocked(self, tmp_path: Path) -> None:
        """tempfile.TemporaryFile/NamedTemporaryFile/mkstemp/mkdtemp into /tmp create nothing."""
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                tempfile.TemporaryFile(dir=tmp_path)  # noqa: SIM115
            with pytest.raises(FileViolation):
                tempfile.NamedTemporaryFile(dir=tmp_path)  # noqa: SIM115
            with pytest.raises(FileViolation):
                tempfile.mkstemp(dir=tmp_path)
            with pytest.raises(FileViolation):
                tempfile.mkdtemp(dir=tmp_path)
        assert list(tmp_path.iterdir()) == []

    def test_sqlite_database_file_is_not_created(self, tmp_path: Path) -> None:
        """sqlite3.connect on a path under /tmp is blocked; an in-memory database is not."""
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                sqlite3.connect(tmp_path / "db.sqlite")
            sqlite3.connect(":memory:").close()
        assert not (tmp_path / "db.sqlite").exists()

    def test_sqlite_uri_spellings_create_nothing(self, tmp_path: Path) -> None:
        """file: URIs, with an authority or %-escapes, are judged by the path they name."""
        escaped = str(tmp_path).replace("/tmp/", "/%74mp/", 1)
        with guard(tmp="block"):
            for name in (
                f"file:{tmp_path}/a.db",
                f"file://{tmp_path}/b.db",
                f"file://localhost{tmp_path}/c.db?mode=rwc",
                f"file:{escaped}/d.db",
            ):
                with pytest.raises(FileViolation):
                    sqlite3.connect(name, uri=True)
        assert list(tmp_path.iterdir()) == []

    def test_logging_file_handler_creates_no_log_file(self, tmp_path: Path) -> None:
        """logging.FileHandler (which keeps its own reference to open) is blocked."""
        with guard(tmp="block"), pytest.raises(FileViolation):
            logging.FileHandler(tmp_path / "app.log")
        assert not (tmp_path / "app.log").exists()

    def test_mmap_of_a_descriptor_opened_before_the_guard_is_blocked(self, existing: Path) -> None:
        """Mapping a /tmp file through an older descriptor is judged by the file behind it."""
        with open(existing, "r+b") as f, guard(tmp="block"), pytest.raises(FileViolation):
            mmap.mmap(f.fileno(), 0)
        assert existing.read_text() == "before"


class TestChanging:
    def test_remove_and_unlink_leave_the_file(self, existing: Path) -> None:
        """os.remove, os.unlink and Path.unlink under /tmp leave the file in place."""
        with guard(tmp="block"):
            for remove in (os.remove, os.unlink, Path.unlink):
                with pytest.raises(FileViolation):
                    remove(existing)
        assert existing.read_text() == "before"

    def test_rename_and_replace_move_nothing(self, existing: Path, tmp_path: Path) -> None:
        """os.rename, os.replace and Path.rename leave source and destination as they were."""
        with guard(tmp="block"):
            for move in (os.rename, os.replace, Path.rename):
                with pytest.raises(FileViolation):
                    move(existing, tmp_path / "moved")
        assert existing.exists()
        assert not (tmp_path / "moved").exists()

    def test_rename_out_of_tmp_is_blocked(self, existing: Path, outside_dir: Path) -> None:
        """Moving a /tmp file elsewhere is a change under /tmp (the source is judged)."""
        with guard(tmp="block"), pytest.raises(FileViolation):
            os.rename(existing, outside_dir / "stolen")
        assert existing.exists()
        assert not (outside_dir / "stolen").exists()

    def test_chmod_chown_utime_truncate_change_nothing(self, existing: Path) -> None:
        """Metadata and size of a /tmp file stay as they were."""
        before = existing.stat()
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                os.chmod(existing, 0o777)
            with pytest.raises(FileViolation):
                os.chown(existing, before.st_uid + 1, before.st_gid + 1)
            with pytest.raises(FileViolation):
                os.utime(existing, (0, 0))
            with pytest.raises(FileViolation):
                os.truncate(existing, 0)
        after = existing.stat()
        assert (after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns, after.st_size) == (
            before.st_mode,
            before.st_uid,
            before.st_gid,
            before.st_mtime_ns,
            before.st_size,
        )

    def test_descriptor_operations_are_judged_by_their_file(self, existing: Path) -> None:
        """ftruncate, fchmod and fchown on a descriptor opened earlier are still judged."""
        fd = os.open(existing, os.O_RDWR)
        try:
            with guard(tmp="block"):
                for call in (
                    lambda: os.ftruncate(fd, 0),
                    lambda: os.fchmod(fd, 0o777),
                    lambda: os.fchown(fd, 1, 1),
                ):
                    with pytest.raises(FileViolation):
                        call()
        finally:
            os.close(fd)
        assert existing.read_text() == "before"
        assert stat.S_IMODE(existing.stat().st_mode) != 0o777

    def test_link_and_symlink_create_no_entry(self, existing: Path, tmp_path: Path) -> None:
        """Hard and symbolic links into /tmp are not created."""
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                os.link(existing, tmp_path / "hard")
            with pytest.raises(FileViolation):
                os.symlink(existing, tmp_path / "soft")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]

    def test_hard_link_to_a_tmp_file_elsewhere_is_a_write(
        self, existing: Path, outside_dir: Path
    ) -> None:
        """Even with access="write", a second name for a /tmp file (through which it could
        be changed) is refused, also when the source is a link pointing into /tmp."""
        (outside_dir / "pointer").symlink_to(existing)
        with guard(tmp=Tmp("block", access="write")):
            with pytest.raises(FileViolation):
                os.link(existing, outside_dir / "second-name")
            with pytest.raises(FileViolation):
                os.link(outside_dir / "pointer", outside_dir / "third-name")
        assert sorted(p.name for p in outside_dir.iterdir()) == ["pointer"]

    def test_mkdir_makedirs_rmdir_change_no_directory(self, tmp_path: Path) -> None:
        """Directories under /tmp are neither created nor removed."""
        (tmp_path / "keep").mkdir()
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                os.mkdir(tmp_path / "d")
            with pytest.raises(FileViolation):
                os.makedirs(tmp_path / "e" / "f")
            with pytest.raises(FileViolation):
                os.rmdir(tmp_path / "keep")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]

    def test_mkfifo_and_mknod_create_nothing(self, tmp_path: Path) -> None:
        """mkfifo and mknod (no audit event exists for them) are blocked by their patches."""
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                os.mkfifo(tmp_path / "fifo")
            with pytest.raises(FileViolation):
                os.mknod(tmp_path / "node")
        assert list(tmp_path.iterdir()) == []

    def test_xattr_is_not_set(self, existing: Path) -> None:
        """Extended attributes of a /tmp file are not written."""
        with guard(tmp="block"), pytest.raises(FileViolation):
            os.setxattr(existing, "user.lambdaguard", b"1")
        assert "user.lambdaguard" not in _xattrs(existing)


def _xattrs(path: Path) -> list[str]:
    try:
        return os.listxattr(path)
    except OSError:
        return []


class TestShutil:
    def test_copy_into_tmp_creates_nothing(self, outside_dir: Path, tmp_path: Path) -> None:
        """shutil.copy, copy2 and copyfile from elsewhere into /tmp are blocked."""
        source = outside_dir / "src.txt"
        source.write_text("payload")
        with guard(tmp="block"):
            for copy in (shutil.copy, shutil.copy2, shutil.copyfile):
                with pytest.raises(FileViolation):
                    copy(source, tmp_path / "dst.txt")
        assert list(tmp_path.iterdir()) == []

    def test_copy_out_of_tmp_reads_nothing(self, existing: Path, outside_dir: Path) -> None:
        """Copying a /tmp file elsewhere is a read under /tmp: nothing arrives."""
        with guard(tmp="block"), pytest.raises(FileViolation):
            shutil.copy(existing, outside_dir / "copy.txt")
        assert not (outside_dir / "copy.txt").exists()

    def test_move_copytree_rmtree_change_nothing(self, tmp_path: Path, outside_dir: Path) -> None:
        """shutil.move, copytree and rmtree leave the /tmp tree as it was."""
        tree = tmp_path / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "f").write_text("x")
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                shutil.move(tree, outside_dir / "moved")
            with pytest.raises(FileViolation):
                shutil.copytree(tree, tmp_path / "copy")
            with pytest.raises(FileViolation):
                shutil.rmtree(tree)
        assert (tree / "sub" / "f").read_text() == "x"
        assert not (tmp_path / "copy").exists()
        assert not (outside_dir / "moved").exists()

    def test_make_archive_writes_no_archive(self, tmp_path: Path, outside_dir: Path) -> None:
        """shutil.make_archive of a /tmp directory, or into /tmp, writes no archive."""
        (outside_dir / "f").write_text("x")
        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                shutil.make_archive(str(tmp_path / "arch"), "zip", outside_dir)
            with pytest.raises(FileViolation):
                shutil.make_archive(str(outside_dir / "arch"), "zip", tmp_path)
        assert not list(tmp_path.glob("arch*"))
        assert not list(outside_dir.glob("arch*"))


class TestListing:
    def test_every_listing_route_is_blocked(self, existing: Path, tmp_path: Path) -> None:
        """os.listdir, os.scandir and Path.iterdir raise instead of naming the entries."""
        with guard(tmp="block"):
            for listing in (
                lambda: os.listdir(tmp_path),
                lambda: list(os.scandir(tmp_path)),
                lambda: list(tmp_path.iterdir()),
            ):
                with pytest.raises(FileViolation):
                    listing()

    def test_glob_finds_nothing_and_reports(
        self, existing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """glob.glob and Path.glob swallow listing errors: they find nothing, and it is logged."""
        with guard(tmp="block"):
            found = glob.glob(f"{tmp_path}/*") + [str(p) for p in tmp_path.glob("*")]
        assert found == []
        assert [v["action"] for v in violation_lines(capsys.readouterr().out)] == ["list", "list"]

    def test_os_walk_yields_nothing_and_reports(
        self, existing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """os.walk swallows listing errors: it yields nothing and the block is still logged."""
        with guard(tmp="block"):
            walked = list(os.walk(tmp_path))
        assert walked == []
        assert [v["action"] for v in violation_lines(capsys.readouterr().out)] == ["list"]


class TestOutsideTmp:
    def test_files_elsewhere_are_untouched_by_the_policy(
        self, outside_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Reading and writing outside /tmp goes ahead and logs nothing."""
        with guard(tmp="block"):
            (outside_dir / "f").write_text("ok")
            assert (outside_dir / "f").read_text() == "ok"
            os.listdir(outside_dir)
        assert capsys.readouterr().out == ""
