"""The memories that keep the file policies cheap cannot be turned against them.

Each test lets lambdaguard remember a path (a link-free path on a writable file system, an
"open" already permitted in a scope), then changes the file system under it the way hostile
code would, and checks that the next operation is judged by where it now lands: the
violation is raised and the secret under /tmp is neither read nor written.
"""

from __future__ import annotations

import functools
import io
import os
import posix
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdaguard import FileViolation, Tmp, guard
from lambdaguard.sensors import files
from tests.files.conftest import run_scenario, violation_lines

SECRET = "tmp-secret-5d1e"


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with empty memories, switched on (as in a new process)."""
    monkeypatch.setattr(files, "_plain", {})
    monkeypatch.setattr(files, "_changed", set())
    monkeypatch.setattr(files, "_plain_state", {"on": True})
    monkeypatch.setattr(files, "_decided", (None, {}))


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A directory under /tmp holding f.txt with a secret in it."""
    directory = tmp_path / "secret"
    directory.mkdir()
    (directory / "f.txt").write_text(SECRET)
    return directory


@pytest.fixture
def restore_cwd() -> Iterator[None]:
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def _read(path: Path | str) -> str:
    with open(path) as f:
        return f.read()


def _remembered(path: Path) -> bool:
    return str(path) in files._plain


class TestLinkFreePathsAreRemembered:
    def test_an_allowed_read_outside_tmp_is_remembered_with_its_directory(
        self, outside_dir: Path
    ) -> None:
        """A read of a link-free file on a writable file system remembers it and its directory."""
        (outside_dir / "f.txt").write_text("public")
        with guard(tmp="block", handler_source="block"):
            assert _read(outside_dir / "f.txt") == "public"
        assert _remembered(outside_dir)
        assert _remembered(outside_dir / "f.txt")

    def test_a_path_through_a_link_is_never_remembered(
        self, outside_dir: Path, tmp_path: Path
    ) -> None:
        """A path that goes through a link is resolved again every time, never remembered."""
        (outside_dir / "real").mkdir()
        (outside_dir / "real" / "f.txt").write_text("public")
        (outside_dir / "link").symlink_to(outside_dir / "real")
        with guard(tmp="block"):
            assert _read(outside_dir / "link" / "f.txt") == "public"
        assert not any(key.startswith(str(outside_dir / "link")) for key in files._plain)

    @pytest.mark.usefixtures("restore_cwd")
    def test_proc_magic_links_are_never_remembered(self, outside_dir: Path, secret: Path) -> None:
        """/proc/self/root and /proc/self/cwd spellings are resolved every time."""
        (outside_dir / "f.txt").write_text("public")
        os.chdir(outside_dir)
        with guard(tmp="block"):
            assert _read(f"/proc/self/root{outside_dir}/f.txt") == "public"
            assert _read("/proc/self/cwd/f.txt") == "public"
            os.chdir(secret)
            with pytest.raises(FileViolation):
                _read("/proc/self/cwd/f.txt")
            with pytest.raises(FileViolation):
                _read(f"/proc/self/root{secret}/f.txt")
        assert not any(key.startswith("/proc") for key in files._plain)


class TestChangesAfterADecision:
    def test_directory_swapped_for_a_link_into_tmp_is_judged_anew(
        self, outside_dir: Path, secret: Path
    ) -> None:
        """A remembered directory renamed away and replaced by a link into /tmp: the next
        read through the same path is blocked."""
        (outside_dir / "sub").mkdir()
        (outside_dir / "sub" / "f.txt").write_text("public")
        with guard(tmp="block"):
            assert _read(outside_dir / "sub" / "f.txt") == "public"
            assert _remembered(outside_dir / "sub" / "f.txt")
            (outside_dir / "sub").rename(outside_dir / "old")
            (outside_dir / "sub").symlink_to(secret)
            with pytest.raises(FileViolation) as caught:
                _read(outside_dir / "sub" / "f.txt")
        assert caught.value.target == str(secret / "f.txt")

    def test_file_replaced_by_a_new_link_is_judged_anew(
        self, outside_dir: Path, secret: Path
    ) -> None:
        """A remembered file removed and recreated as a link into /tmp: reads and writes
        through its name are blocked, and the /tmp file keeps its content."""
        target = outside_dir / "f.txt"
        target.write_text("public")
        with guard(tmp="block"):
            assert _read(target) == "public"
            target.unlink()
            target.symlink_to(secret / "f.txt")
            with pytest.raises(FileViolation):
                _read(target)
            with pytest.raises(FileViolation):
                target.write_text("overwritten")
        assert (secret / "f.txt").read_text() == SECRET

    def test_directory_holding_a_link_renamed_over_a_remembered_name(
        self, outside_dir: Path, secret: Path
    ) -> None:
        """A staged directory whose entry is a link into /tmp, renamed into the place of a
        remembered directory (the atomic-deploy trick), is judged by its new content."""
        (outside_dir / "live" / "inner").mkdir(parents=True)
        (outside_dir / "live" / "inner" / "f.txt").write_text("public")
        (outside_dir / "staging").mkdir()
        (outside_dir / "staging" / "inner").symlink_to(secret)
        with guard(tmp="block"):
            assert _read(outside_dir / "live" / "inner" / "f.txt") == "public"
            os.rename(outside_dir / "live", outside_dir / "retired")
            os.replace(outside_dir / "staging", outside_dir / "live")
            with pytest.raises(FileViolation):
                _read(outside_dir / "live" / "inner" / "f.txt")

    def test_hard_link_to_a_link_over_a_remembered_name(
        self, outside_dir: Path, secret: Path
    ) -> None:
        """os.link(..., follow_symlinks=False) makes a second name for a link: a remembered
        name it replaces (outside the scope, where linking a /tmp file is allowed) is
        judged anew."""
        (outside_dir / "f.txt").write_text("public")
        (outside_dir / "pointer").symlink_to(secret / "f.txt")
        with guard(tmp="block"):
            assert _read(outside_dir / "f.txt") == "public"
        assert _remembered(outside_dir / "f.txt")
        (outside_dir / "f.txt").unlink()
        os.link(outside_dir / "pointer", outside_dir / "f.txt", follow_symlinks=False)
        assert (outside_dir / "f.txt").is_symlink()
        with guard(tmp="block"), pytest.raises(FileViolation):
            _read(outside_dir / "f.txt")

    def test_directory_moved_into_tmp_is_judged_where_it_now_is(
        self, outside_dir: Path, tmp_path: Path
    ) -> None:
        """A remembered directory moved into /tmp and reached through a link left in its
        place is judged under /tmp (same file system here, so the rename succeeds)."""
        if os.stat(outside_dir).st_dev != os.stat(tmp_path).st_dev:
            pytest.fail("this test needs /var/tmp and /tmp on one file system")
        (outside_dir / "sub").mkdir()
        (outside_dir / "sub" / "f.txt").write_text(SECRET)
        with guard(tmp="block"):
            assert _read(outside_dir / "sub" / "f.txt") == SECRET
        os.rename(outside_dir / "sub", tmp_path / "sub")
        os.symlink(tmp_path / "sub", outside_dir / "sub")
        with guard(tmp="block"), pytest.raises(FileViolation) as caught:
            _read(outside_dir / "sub" / "f.txt")
        assert caught.value.target == str(tmp_path / "sub" / "f.txt")

    def test_changes_through_posix_directly_are_seen(self, outside_dir: Path, secret: Path) -> None:
        """posix.rename and posix.symlink (no patch on either) still make it forget."""
        (outside_dir / "sub").mkdir()
        (outside_dir / "sub" / "f.txt").write_text("public")
        with guard(tmp="block"):
            assert _read(outside_dir / "sub" / "f.txt") == "public"
            posix.rename(str(outside_dir / "sub"), str(outside_dir / "old"))
            posix.symlink(str(secret), str(outside_dir / "sub"))
            with pytest.raises(FileViolation):
                _read(outside_dir / "sub" / "f.txt")

    def test_link_extracted_from_a_tar_archive_is_seen(
        self, outside_dir: Path, secret: Path, tmp_path: Path
    ) -> None:
        """tarfile extracting a link over a remembered name (outside any scope) is seen."""
        import tarfile

        (outside_dir / "f.txt").write_text("public")
        with guard(tmp="block"):
            assert _read(outside_dir / "f.txt") == "public"
        member = tarfile.TarInfo("f.txt")
        member.type, member.linkname = tarfile.SYMTYPE, str(secret / "f.txt")
        archive = outside_dir / "links.tar"
        with tarfile.open(archive, "w") as tar:
            tar.addfile(member)
        (outside_dir / "f.txt").unlink()
        with tarfile.open(archive) as tar:
            tar.extractall(outside_dir, filter="fully_trusted")
        assert (outside_dir / "f.txt").is_symlink()
        with guard(tmp="block"), pytest.raises(FileViolation):
            _read(outside_dir / "f.txt")

    def test_changes_made_outside_any_scope_are_seen(self, outside_dir: Path, secret: Path) -> None:
        """A swap made between two guarded scopes, with no scope active, is seen in the next."""
        (outside_dir / "sub").mkdir()
        (outside_dir / "sub" / "f.txt").write_text("public")
        with guard(tmp="block"):
            assert _read(outside_dir / "sub" / "f.txt") == "public"
        (outside_dir / "sub").rename(outside_dir / "old")
        (outside_dir / "sub").symlink_to(secret)
        with guard(tmp="block"), pytest.raises(FileViolation):
            _read(outside_dir / "sub" / "f.txt")

    def test_changes_made_by_another_thread_are_seen(self, outside_dir: Path, secret: Path) -> None:
        """A thread with no scope swapping the directory is seen by the guarded thread."""
        (outside_dir / "sub").mkdir()
        (outside_dir / "sub" / "f.txt").write_text("public")

        def swap() -> None:
            (outside_dir / "sub").rename(outside_dir / "old")
            (outside_dir / "sub").symlink_to(secret)

        with guard(tmp="block"):
            assert _read(outside_dir / "sub" / "f.txt") == "public"
            worker = threading.Thread(target=swap)
            worker.start()
            worker.join()
            with pytest.raises(FileViolation):
                _read(outside_dir / "sub" / "f.txt")

    def test_dir_fd_relative_open_after_the_entry_became_a_link(
        self, outside_dir: Path, secret: Path
    ) -> None:
        """os.open relative to a dir_fd, remembered, then the entry replaced by a link into
        /tmp: the next os.open with the same dir_fd is blocked."""
        (outside_dir / "f.txt").write_text("public")
        fd = os.open(outside_dir, os.O_RDONLY)
        try:
            with guard(tmp="block"):
                os.close(os.open("f.txt", os.O_RDONLY, dir_fd=fd))
                assert _remembered(outside_dir / "f.txt")
                os.unlink("f.txt", dir_fd=fd)
                os.symlink(secret / "f.txt", "f.txt", dir_fd=fd)
                with pytest.raises(FileViolation):
                    os.open("f.txt", os.O_RDONLY, dir_fd=fd)
        finally:
            os.close(fd)

    def test_a_child_process_switches_the_memory_off(self, outside_dir: Path) -> None:
        """Links a child process makes are not seen, so starting one switches the memory
        off for good; the swap the child makes is then judged at once."""
        (outside_dir / "sub").mkdir()
        (outside_dir / "sub" / "f.txt").write_text("public")
        outcome = run_scenario(
            f"""
            import os, subprocess, tempfile
            from lambdaguard import guard, FileViolation
            from lambdaguard.sensors import files
            outside = {str(outside_dir)!r}
            secret = tempfile.mkdtemp()
            with open(os.path.join(secret, "f.txt"), "w") as f:
                f.write({SECRET!r})
            with guard(tmp="block"):
                first = open(outside + "/sub/f.txt").read()
                remembered = outside + "/sub/f.txt" in files._plain
                subprocess.run(
                    ["sh", "-c", f"mv {{outside}}/sub {{outside}}/old && ln -s {{secret}} {{outside}}/sub"],
                    check=True,
                )
                try:
                    second = open(outside + "/sub/f.txt").read()
                except FileViolation:
                    second = "blocked"
                opened_again = outside + "/old/f.txt"
                open(opened_again).read()
            result([first, remembered, second, files._plain_state["on"], opened_again in files._plain])
            """
        )
        assert outcome.result == ["public", True, "blocked", False, False]

    def test_a_multiprocessing_child_switches_the_memory_off(self, outside_dir: Path) -> None:
        """multiprocessing's spawn start (through _posixsubprocess, which raises no audit
        event) switches the memory off too."""
        import multiprocessing
        import time

        (outside_dir / "f.txt").write_text("public")
        with guard(tmp="block"):
            assert _read(outside_dir / "f.txt") == "public"
        assert files._plain_state["on"]
        child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
        child.start()
        child.join()
        assert not files._plain_state["on"]
        assert not files._plain


class TestPermittedOpensAreRemembered:
    def test_allow_listed_tmp_directory_swapped_for_a_link_is_judged_anew(
        self, tmp_path: Path, secret: Path
    ) -> None:
        """An allow-listed /tmp file read twice (the second time from memory), then its
        directory swapped for a link to a directory that is not allow-listed: blocked."""
        (tmp_path / "ok").mkdir()
        (tmp_path / "ok" / "f.txt").write_text("cached")
        scope = guard(tmp=Tmp("block", allow=[f"{tmp_path}/ok/**"]))
        with scope:
            assert _read(tmp_path / "ok" / "f.txt") == "cached"
            assert _read(tmp_path / "ok" / "f.txt") == "cached"
            remembered_under = files._decided[0]
            assert remembered_under is not None
            assert files._decided[1]
            with scope.relaxed(tmp="allow"):  # the swap itself is a write under /tmp
                (tmp_path / "ok").rename(tmp_path / "was-ok")
                (tmp_path / "ok").symlink_to(secret)
            with pytest.raises(FileViolation) as caught:
                _read(tmp_path / "ok" / "f.txt")
        assert caught.value.target == str(secret / "f.txt")

    def test_a_permitted_open_is_not_carried_into_a_stricter_scope(self, tmp_path: Path) -> None:
        """What one scope's allow-list permitted is decided again under another scope."""
        (tmp_path / "f.txt").write_text("x")
        with guard(tmp=Tmp("block", allow=[f"{tmp_path}/**"])):
            assert _read(tmp_path / "f.txt") == "x"
        with guard(tmp="block"), pytest.raises(FileViolation):
            _read(tmp_path / "f.txt")

    def test_alert_mode_reports_every_open_not_only_the_first(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An alerted open is never remembered as permitted: each one gives its line."""
        (tmp_path / "f.txt").write_text("x")
        with guard(tmp="alert"):
            for _ in range(3):
                assert _read(tmp_path / "f.txt") == "x"
        lines = violation_lines(capsys.readouterr().out)
        assert [line["action"] for line in lines] == ["read", "read", "read"]

    def test_hostile_path_object_cannot_borrow_a_remembered_verdict(
        self, outside_dir: Path, secret: Path
    ) -> None:
        """io.FileIO given an object that hashes and compares equal to a remembered path,
        but names a /tmp file, is judged by the file it names."""
        allowed = str(outside_dir / "f.txt")
        Path(allowed).write_text("public")

        class Impostor:
            def __fspath__(self) -> str:
                return str(secret / "f.txt")

            def __hash__(self) -> int:
                return hash(allowed)

            def __eq__(self, other: object) -> bool:
                return True

        with guard(tmp="block"):
            assert _read(allowed) == "public"
            assert _read(allowed) == "public"
            with pytest.raises(FileViolation):
                io.FileIO(Impostor(), "r")  # type: ignore[arg-type]


def _start_a_child() -> None:
    subprocess.run(["true"], check=True)


def _stamp_of(path: Path, mode: str = "r") -> object:
    """The remembered verdict's value for an ``open(path, mode)`` in the current view."""
    flags = {"r": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode] | os.O_CLOEXEC
    return files._decided[1].get((str(path), mode, flags), "absent")


class TestRememberedOpensAfterAChildProcess:
    """Once a child has started, a remembered open is checked with one stat at each use:
    a child (unseen) can move the judged file, never put another file behind its path."""

    @pytest.fixture
    def allowed(self, tmp_path: Path) -> Path:
        """An allow-listed /tmp directory holding f.txt."""
        (tmp_path / "ok").mkdir()
        (tmp_path / "ok" / "f.txt").write_text("cached")
        return tmp_path / "ok"

    def test_an_allowed_open_after_a_child_is_remembered_with_its_stamp(
        self, allowed: Path
    ) -> None:
        """The fast path exists: after a child, a permitted open is remembered with the
        file's device, inode and ctime, and the next open is settled from memory."""
        with guard(tmp=Tmp("block", allow=[f"{allowed}/**"])):
            _start_a_child()
            assert not files._plain_state["on"]
            assert _read(allowed / "f.txt") == "cached"
            stamp = _stamp_of(allowed / "f.txt")
            found = os.stat(allowed / "f.txt")
            assert stamp == (found.st_dev, found.st_ino, found.st_ctime_ns)
            active = files._decided[0]
            assert active is not None
            args = (str(allowed / "f.txt"), "r", os.O_RDONLY | os.O_CLOEXEC)
            assert files._settled_open(args, active)

    def test_file_a_child_replaced_with_a_link_is_judged_anew(
        self, allowed: Path, secret: Path
    ) -> None:
        """A remembered file that a child process removes and recreates as a link to a
        /tmp secret: the next read through its name is blocked, reads nothing."""
        with guard(tmp=Tmp("block", allow=[f"{allowed}/**"])):
            _start_a_child()
            assert _read(allowed / "f.txt") == "cached"
            assert _read(allowed / "f.txt") == "cached"
            assert isinstance(_stamp_of(allowed / "f.txt"), tuple)
            subprocess.run(
                ["sh", "-c", f"rm {allowed}/f.txt && ln -s {secret}/f.txt {allowed}/f.txt"],
                check=True,
            )
            with pytest.raises(FileViolation) as caught:
                _read(allowed / "f.txt")
        assert caught.value.target == str(secret / "f.txt")

    def test_directory_a_child_swapped_for_a_link_is_judged_anew(
        self, allowed: Path, secret: Path
    ) -> None:
        """A child moves the allow-listed directory away and links its name to a secret
        directory holding a file of the same name: blocked, for reads and for writes."""
        with guard(tmp=Tmp("block", allow=[f"{allowed}/**"])):
            _start_a_child()
            assert _read(allowed / "f.txt") == "cached"
            (allowed / "f.txt").write_text("cached")  # a write remembered too
            (allowed / "f.txt").write_text("cached")
            assert isinstance(_stamp_of(allowed / "f.txt", "w"), tuple)
            subprocess.run(
                ["sh", "-c", f"mv {allowed} {allowed}.old && ln -s {secret} {allowed}"],
                check=True,
            )
            with pytest.raises(FileViolation):
                _read(allowed / "f.txt")
            with pytest.raises(FileViolation):
                (allowed / "f.txt").write_text("overwritten")
        assert (secret / "f.txt").read_text() == SECRET

    def test_swap_by_the_handler_itself_after_a_child_is_judged_anew(
        self, allowed: Path, secret: Path
    ) -> None:
        """The handler's own swap, once children have started, is blocked as well."""
        scope = guard(tmp=Tmp("block", allow=[f"{allowed}/**"]))
        with scope:
            _start_a_child()
            assert _read(allowed / "f.txt") == "cached"
            assert _read(allowed / "f.txt") == "cached"
            with scope.relaxed(tmp="allow"):
                (allowed / "f.txt").unlink()
                (allowed / "f.txt").symlink_to(secret / "f.txt")
            with pytest.raises(FileViolation):
                _read(allowed / "f.txt")

    def test_a_later_child_swap_is_caught_by_the_stamp_alone(
        self, allowed: Path, secret: Path
    ) -> None:
        """Later children do not empty the memory; the stamp alone catches their swap."""
        with guard(tmp=Tmp("block", allow=[f"{allowed}/**"])):
            _start_a_child()
            assert _read(allowed / "f.txt") == "cached"
            subprocess.run(
                ["sh", "-c", f"rm {allowed}/f.txt && ln -s {secret}/f.txt {allowed}/f.txt"],
                check=True,
            )
            assert isinstance(_stamp_of(allowed / "f.txt"), tuple)  # still remembered
            with pytest.raises(FileViolation):
                _read(allowed / "f.txt")

    def test_a_path_through_a_link_is_not_remembered_after_a_child(
        self, tmp_path: Path, allowed: Path
    ) -> None:
        """Only a path whose kernel path is itself gets a stamp: a link on the way, even to
        an allowed file, is walked at every open."""
        (tmp_path / "link").symlink_to(allowed)
        with guard(tmp=Tmp("block", allow=[f"{tmp_path}/**"])):
            _start_a_child()
            assert _read(tmp_path / "link" / "f.txt") == "cached"
            assert _read(tmp_path / "link" / "f.txt") == "cached"
            assert _stamp_of(tmp_path / "link" / "f.txt") == "absent"

    def test_a_link_out_of_the_allowed_directory_is_judged_where_it_leads_after_a_child(
        self, allowed: Path, secret: Path
    ) -> None:
        """After a child, a stamp stands in for the walk only when the path leads to itself:
        a link in the allowed directory to a secret, opened for the first time or after a
        permitted read of the same name, is blocked and the secret left unwritten."""
        (allowed / "link.txt").symlink_to(secret / "f.txt")
        with guard(tmp=Tmp("block", allow=[f"{allowed}/**"])):
            _start_a_child()
            with pytest.raises(FileViolation) as caught:
                _read(allowed / "link.txt")
            with pytest.raises(FileViolation):
                (allowed / "link.txt").write_text("overwritten")
            assert _read(allowed / "f.txt") == "cached"
        assert caught.value.target == str(secret / "f.txt")
        assert (secret / "f.txt").read_text() == SECRET

    def test_no_stamp_for_a_path_that_became_a_link_after_its_walk(
        self, tmp_path: Path, allowed: Path
    ) -> None:
        """The stamp is taken from the kernel's own walk of the path: if a link appeared
        on the way between the decision's walk and the stamp, there is no stamp."""
        (tmp_path / "link").symlink_to(allowed)
        found = os.stat(allowed / "f.txt")
        assert files._identity(str(allowed / "f.txt")) == (
            found.st_dev,
            found.st_ino,
            found.st_ctime_ns,
        )
        assert files._identity(str(tmp_path / "link" / "f.txt")) is None

    def test_limit_a_file_a_child_moved_is_opened_where_it_now_is(
        self, allowed: Path, secret: Path
    ) -> None:
        """Limit: a child that moves the judged directory into a blocked one and links the
        old name to it leads the remembered open to the very file that was permitted (its
        inode and ctime are unchanged), which the handler could have opened before."""
        with guard(tmp=Tmp("block", allow=[f"{allowed}/**"])):
            _start_a_child()
            assert _read(allowed / "f.txt") == "cached"
            subprocess.run(
                ["sh", "-c", f"mv {allowed} {secret}/moved && ln -s {secret}/moved {allowed}"],
                check=True,
            )
            assert _read(allowed / "f.txt") == "cached"

    def test_another_file_behind_a_moved_directory_is_judged_anew(
        self, allowed: Path, secret: Path
    ) -> None:
        """The same move, with the secret file renamed into the moved directory in place
        of the judged one: the open through the old name is blocked."""
        with guard(tmp=Tmp("block", allow=[f"{allowed}/**"])):
            _start_a_child()
            assert _read(allowed / "f.txt") == "cached"
            subprocess.run(
                [
                    "sh",
                    "-c",
                    f"mv {allowed} {secret}/moved && ln -s {secret}/moved {allowed}"
                    f" && mv {secret}/f.txt {secret}/moved/f.txt",
                ],
                check=True,
            )
            with pytest.raises(FileViolation) as caught:
                _read(allowed / "f.txt")
        assert caught.value.target == str(secret / "moved" / "f.txt")


class TestOnePathPerDecision:
    """The path judged is the path opened, even for a path-like object that changes its mind."""

    @staticmethod
    def _shifty(first: Path, then: Path) -> Any:
        calls = iter([first, *[then] * 10])

        class Shifty:
            def __fspath__(self) -> str:
                return str(next(calls))

        return Shifty()

    def test_open_uses_the_path_it_judged(self, outside_dir: Path, tmp_path: Path) -> None:
        """open() with a __fspath__ that names an allowed path first and /tmp after opens
        the path that was judged, and nothing under /tmp."""
        with guard(tmp="block"):
            open(self._shifty(outside_dir / "a.txt", tmp_path / "a.txt"), "w").close()
        assert (outside_dir / "a.txt").exists()
        assert not (tmp_path / "a.txt").exists()

    def test_os_open_uses_the_path_it_judged(self, outside_dir: Path, tmp_path: Path) -> None:
        """os.open() hands the original the text it judged, not a second __fspath__ answer."""
        shifty = self._shifty(outside_dir / "b.txt", tmp_path / "b.txt")
        with guard(tmp="block"):
            os.close(os.open(shifty, os.O_WRONLY | os.O_CREAT))
        assert (outside_dir / "b.txt").exists()
        assert not (tmp_path / "b.txt").exists()

    def test_fileio_opener_relative_to_a_tmp_directory_is_still_refused(
        self, tmp_path: Path
    ) -> None:
        """With builtins.open left to the audit hook, a relative open through an opener
        bound to a /tmp directory descriptor is still judged in that directory."""
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            with guard(tmp=Tmp("block", access="write")), pytest.raises(FileViolation):
                open("sneaky.txt", "w", opener=functools.partial(os.open, dir_fd=fd))  # noqa: SIM115
        finally:
            os.close(fd)
        assert not (tmp_path / "sneaky.txt").exists()
