"""Path decisions that cannot be fooled, allow-lists, write-only mode and configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaguard import ConfigError, FileViolation, Tmp, guard
from lambdaguard.policies.files import Glob, glob_to_regex
from lambdaguard.sensors import files
from tests.files.conftest import run_scenario, violation_lines


@pytest.fixture
def restore_cwd() -> Iterator[None]:
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


class TestSpellings:
    @pytest.mark.usefixtures("restore_cwd")
    def test_relative_path_from_a_cwd_in_tmp_is_blocked(self, tmp_path: Path) -> None:
        """A relative path is taken from the current directory, as the kernel does."""
        os.chdir(tmp_path)
        with guard(tmp="block"), pytest.raises(FileViolation):
            open("rel.txt", "w")  # noqa: SIM115
        assert not (tmp_path / "rel.txt").exists()

    def test_dotdot_into_tmp_is_blocked(self, tmp_path: Path, outside_dir: Path) -> None:
        """A path that climbs out of another directory into /tmp is judged where it lands."""
        sneaky = f"{outside_dir}/../../..{tmp_path}/dots.txt"
        with guard(tmp="block"), pytest.raises(FileViolation) as caught:
            open(sneaky, "w")  # noqa: SIM115
        assert caught.value.target == str(tmp_path / "dots.txt")
        assert not (tmp_path / "dots.txt").exists()

    def test_symlink_elsewhere_pointing_into_tmp_is_followed(
        self, tmp_path: Path, outside_dir: Path
    ) -> None:
        """A link outside /tmp whose target is in /tmp is judged by its target."""
        (outside_dir / "door").symlink_to(tmp_path)
        with guard(tmp="block"), pytest.raises(FileViolation):
            open(outside_dir / "door" / "through.txt", "w")  # noqa: SIM115
        assert not (tmp_path / "through.txt").exists()

    def test_dangling_symlink_to_a_new_tmp_file_creates_nothing(
        self, tmp_path: Path, outside_dir: Path
    ) -> None:
        """Opening a dangling link for writing would create its /tmp target: blocked."""
        (outside_dir / "dangling").symlink_to(tmp_path / "created-by-link.txt")
        with guard(tmp="block"), pytest.raises(FileViolation):
            open(outside_dir / "dangling", "w")  # noqa: SIM115
        assert not (tmp_path / "created-by-link.txt").exists()

    def test_symlink_in_tmp_pointing_out_is_still_tmp(
        self, tmp_path: Path, outside_dir: Path
    ) -> None:
        """A path written through /tmp is governed even when a link there leads elsewhere."""
        (outside_dir / "target.txt").write_text("outside")
        (tmp_path / "exit").symlink_to(outside_dir / "target.txt")
        with guard(tmp="block"), pytest.raises(FileViolation):
            open(tmp_path / "exit").read()  # noqa: SIM115

    @pytest.mark.usefixtures("restore_cwd")
    @pytest.mark.parametrize(
        "spelling",
        [
            "/proc/self/root{tmp}/p.txt",
            "/proc/{pid}/root{tmp}/p.txt",
            "/proc/self/cwd/p.txt",
            "/proc/thread-self/root{tmp}/p.txt",
        ],
    )
    def test_proc_magic_links_resolve_to_tmp(self, tmp_path: Path, spelling: str) -> None:
        """/proc/self/root, /proc/<pid>/root and /proc/self/cwd lead to the real /tmp path."""
        os.chdir(tmp_path)
        path = spelling.format(tmp=tmp_path, pid=os.getpid())
        with guard(tmp="block"), pytest.raises(FileViolation) as caught:
            open(path, "w")  # noqa: SIM115
        assert caught.value.target == str(tmp_path / "p.txt")
        assert not (tmp_path / "p.txt").exists()

    def test_directory_swapped_for_a_link_is_seen_at_once(
        self, tmp_path: Path, outside_dir: Path
    ) -> None:
        """On a writable file system a remembered directory replaced by a link into /tmp
        is judged by its new target on the very next call."""
        (outside_dir / "sub").mkdir()
        with guard(tmp="block"):
            (outside_dir / "sub" / "first.txt").write_text("allowed")
            (outside_dir / "sub" / "first.txt").unlink()
            (outside_dir / "sub").rmdir()
            (outside_dir / "sub").symlink_to(tmp_path)
            with pytest.raises(FileViolation):
                (outside_dir / "sub" / "second.txt").write_text("blocked")
        assert not (tmp_path / "second.txt").exists()

    def test_proc_self_fd_of_a_tmp_directory_is_blocked(self, tmp_path: Path) -> None:
        """/proc/self/fd/N of a /tmp directory opened earlier still lands in /tmp."""
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            with guard(tmp="block"), pytest.raises(FileViolation):
                open(f"/proc/self/fd/{fd}/via-fd.txt", "w")  # noqa: SIM115
        finally:
            os.close(fd)
        assert not (tmp_path / "via-fd.txt").exists()

    def test_dir_fd_relative_operations_are_judged_in_that_directory(self, tmp_path: Path) -> None:
        """os.open/mkdir/remove relative to a /tmp dir_fd are judged in /tmp, not the cwd."""
        (tmp_path / "victim").write_text("x")
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            with guard(tmp="block"):
                with pytest.raises(FileViolation):
                    os.open("made", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
                with pytest.raises(FileViolation):
                    os.mkdir("dir", dir_fd=fd)
                with pytest.raises(FileViolation):
                    os.remove("victim", dir_fd=fd)
                with pytest.raises(FileViolation):
                    os.mkfifo("fifo", dir_fd=fd)
        finally:
            os.close(fd)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]

    def test_dir_fd_through_an_unpatched_opener_is_still_judged_in_tmp(
        self, tmp_path: Path
    ) -> None:
        """Write-only mode lets a /tmp directory be opened; a write relative to it through
        an os.open taken before the patch (seen only by the audit hook) is still refused."""
        import functools
        import io

        from lambdaguard.sensors import files

        original_os_open = files._os_open  # what code that captured os.open early holds
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            with guard(tmp=Tmp("block", access="write")), pytest.raises(FileViolation):
                io.FileIO("sneaky.txt", "w", opener=functools.partial(original_os_open, dir_fd=fd))
        finally:
            os.close(fd)
        assert not (tmp_path / "sneaky.txt").exists()

    def test_bytes_and_pathlike_paths_are_judged(self, tmp_path: Path) -> None:
        """bytes paths and os.PathLike objects are decoded the way the OS call does."""

        class Custom:
            def __fspath__(self) -> bytes:
                return os.fsencode(tmp_path / "custom.txt")

        with guard(tmp="block"):
            with pytest.raises(FileViolation):
                open(os.fsencode(tmp_path / "bytes.txt"), "w")  # noqa: SIM115
            with pytest.raises(FileViolation):
                open(Custom(), "w")  # type: ignore[call-overload]  # noqa: SIM115
            with pytest.raises(FileViolation):
                os.mkdir(os.fsencode(tmp_path / "bdir"))
        assert list(tmp_path.iterdir()) == []

    def test_non_utf8_bytes_name_still_gives_one_json_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A hostile file name (invalid UTF-8, quotes, newline) is one valid JSON line."""
        name = os.fsencode(tmp_path) + b'/bad\xff"\n.txt'
        with guard(tmp="block"), pytest.raises(FileViolation):
            open(name, "w")  # noqa: SIM115
        (line,) = violation_lines(capsys.readouterr().out)
        assert line["target"].startswith(str(tmp_path) + "/bad")

    def test_open_by_descriptor_number_is_judged_by_its_file(self, tmp_path: Path) -> None:
        """open(fd) of a /tmp file opened before the guard is blocked."""
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
        try:
            with guard(tmp="block"), pytest.raises(FileViolation):
                open(fd, "w", closefd=False)  # noqa: SIM115
        finally:
            os.close(fd)


class TestRememberedResolutions:
    @pytest.mark.usefixtures("restore_cwd")
    def test_read_only_directories_are_remembered_but_proc_links_never(
        self, tmp_path: Path, outside_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With every file system read-only (as in Lambda outside /tmp), link-free
        directories are remembered, while /proc/self/cwd still follows a chdir."""
        monkeypatch.setattr(files, "_read_only", lambda path: True)
        monkeypatch.setattr(files, "_stable", {})
        os.chdir(outside_dir)
        with guard(tmp="block"):
            open("/proc/self/cwd/a.txt", "w").close()
            (outside_dir / "b.txt").write_text("b")
            os.chdir(tmp_path)
            with pytest.raises(FileViolation):
                open("/proc/self/cwd/c.txt", "w")  # noqa: SIM115
        assert files._stable[str(outside_dir)] == str(outside_dir)
        assert not any(key.startswith("/proc") for key in files._stable)
        assert not (tmp_path / "c.txt").exists()


class TestDetailsAndLimits:
    def test_log_line_gives_the_path_as_written_and_the_descriptor(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """details carry path_as_written when it differs from the target, and fd."""
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
        try:
            with guard(tmp="block"):
                with pytest.raises(FileViolation):
                    open(f"/proc/self/root{tmp_path}/g", "w")  # noqa: SIM115
                with pytest.raises(FileViolation):
                    os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        first, second = violation_lines(capsys.readouterr().out)
        assert first["details"] == {
            "path_as_written": f"/proc/self/root{tmp_path}/g",
            "access": "write",
        }
        assert first["target"] == str(tmp_path / "g")
        assert second["details"] == {"fd": fd, "access": "write"}

    def test_two_path_operations_name_source_and_destination(
        self, tmp_path: Path, outside_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A rename's line carries both paths, whichever of them is the governed one."""
        (outside_dir / "src").write_text("x")
        with guard(tmp="block"), pytest.raises(FileViolation):
            os.rename(outside_dir / "src", tmp_path / "dst")
        (line,) = violation_lines(capsys.readouterr().out)
        assert (line["action"], line["target"]) == ("rename", str(tmp_path / "dst"))
        assert line["details"] == {
            "source": str(outside_dir / "src"),
            "destination": str(tmp_path / "dst"),
            "access": "write",
        }

    def test_opening_a_tmp_directory_descriptor_is_a_read(self, tmp_path: Path) -> None:
        """A descriptor for a /tmp directory (a dir_fd base) cannot be had under block."""
        with guard(tmp="block"), pytest.raises(FileViolation):
            os.open(tmp_path, os.O_RDONLY)

    def test_existence_checks_are_not_governed(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """os.stat and os.path.exists raise no audit event: they go ahead, unlogged."""
        (tmp_path / "f").write_text("x")
        with guard(tmp="block"):
            assert os.path.exists(tmp_path / "f")
            assert os.stat(tmp_path / "f").st_size == 1
        assert capsys.readouterr().out == ""

    def test_descriptor_opened_before_the_scope_is_not_rechecked(self, tmp_path: Path) -> None:
        """Known limit: os.read/os.write on an earlier descriptor raise no event."""
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
        try:
            with guard(tmp="block"):
                os.write(fd, b"written")
        finally:
            os.close(fd)
        assert (tmp_path / "f").read_bytes() == b"written"


class TestAllowList:
    def test_allowed_glob_lets_writes_through_and_nothing_else(self, tmp_path: Path) -> None:
        """Tmp("block", allow=[".../cache/**"]) exempts the cache directory only."""
        cache = tmp_path / "cache"
        cache.mkdir()
        with guard(tmp=Tmp("block", allow=[f"{cache}/**"])):
            (cache / "sub").mkdir()
            (cache / "sub" / "entry.bin").write_bytes(b"ok")
            with pytest.raises(FileViolation):
                (tmp_path / "outside-cache.txt").write_text("no")
        assert (cache / "sub" / "entry.bin").read_bytes() == b"ok"
        assert not (tmp_path / "outside-cache.txt").exists()

    def test_single_star_stays_within_one_component(self, tmp_path: Path) -> None:
        """'*' does not cross '/': an entry for *.json does not allow a subdirectory's files."""
        (tmp_path / "sub").mkdir()
        with guard(tmp=Tmp("block", allow=[f"{tmp_path}/*.json"])):
            (tmp_path / "a.json").write_text("{}")
            with pytest.raises(FileViolation):
                (tmp_path / "sub" / "b.json").write_text("{}")
        assert not (tmp_path / "sub" / "b.json").exists()

    def test_link_in_allowed_directory_cannot_reach_outside_it(self, tmp_path: Path) -> None:
        """A link placed in the allowed directory is judged by where it leads too."""
        cache = tmp_path / "cache"
        cache.mkdir()
        (cache / "escape").symlink_to(tmp_path)
        with guard(tmp=Tmp("block", allow=[f"{cache}/**"])), pytest.raises(FileViolation):
            open(cache / "escape" / "outside.txt", "w")  # noqa: SIM115
        assert not (tmp_path / "outside.txt").exists()

    @pytest.mark.parametrize(
        "pattern",
        ["/tmp/cache", "/tmp/cache/**", "/tmp/c.che/**", "/tmp/*.json", "/tmp/**/out.txt",
         "/tmp/a?c/**", "/tmp/ca*/**", "/tmp/x**", "/**", "/", "./**", "/tmp/[ab]/**"],
    )
    def test_entries_without_a_regex_match_what_the_glob_would(self, pattern: str) -> None:
        """An entry matched by string compare (plain path, dir/**) accepts exactly the
        paths its regular expression accepts: no more, no less."""
        paths = ["/tmp/cache", "/tmp/cache/", "/tmp/cache/x", "/tmp/cache/x/y", "/tmp/cachex",
                 "/tmp/cach", "/tmp/c.che/x", "/tmp/cXche/x", "/tmp/a.json", "/tmp/d/a.json",
                 "/tmp/out.txt", "/tmp/a/b/out.txt", "/tmp/abc/x", "/tmp/xyz", "/", "//x", ".",
                 "./x", "/tmp/[ab]/x", "/tmp/a/x", "/tmp/cache/\n", "/tmp/cache\n/x"]
        regex = glob_to_regex(pattern)
        glob = Glob(pattern)
        for path in paths:
            assert glob.match(path) == (regex.match(path) is not None), path

    def test_plain_allow_entries_need_no_regular_expressions(self) -> None:
        """A tmp rule whose entries have no wildcard other than a final /** is built and
        matched without importing re (~4 ms of cold start)."""
        code = (
            "import sys\n"
            "sys.modules['re'] = None  # any import of re now fails\n"
            "from lambdaguard.policies.files import Tmp\n"
            "rule = Tmp('block', allow=['/tmp/cache/**', '/tmp/one.txt'])\n"
            "print(rule.permits_paths('/tmp/cache/a', '/tmp/cache/a', True),"
            " rule.permits_paths('/tmp/one.txt', '/tmp/one.txt', True),"
            " rule.permits_paths('/tmp/other', '/tmp/other', True))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert out.split() == ["True", "True", "False"]

    def test_relative_allow_entry_is_a_config_error(self) -> None:
        """A relative glob cannot say what it exempts: ConfigError names entry and syntax."""
        with pytest.raises(ConfigError) as caught:
            Tmp("block", allow=["cache/*"])
        assert str(caught.value) == (
            "Tmp(allow=...): allow-list entry 'cache/*' is not an absolute path; accepted: "
            "absolute path globs such as /tmp/cache/** (* and ? within one path component, "
            "** across components)."
        )


class TestWriteOnly:
    def test_write_access_blocks_writes_and_lets_reads_through(self, tmp_path: Path) -> None:
        """Tmp("block", access="write"): reading and listing work, creating does not."""
        (tmp_path / "in.txt").write_text("readable")
        with guard(tmp=Tmp("block", access="write")):
            assert (tmp_path / "in.txt").read_text() == "readable"
            assert os.listdir(tmp_path) == ["in.txt"]
            with pytest.raises(FileViolation):
                (tmp_path / "out.txt").write_text("no")
            with pytest.raises(FileViolation):
                open(tmp_path / "in.txt", "r+")  # noqa: SIM115
        assert sorted(os.listdir(tmp_path)) == ["in.txt"]

    def test_bad_access_value_is_a_config_error(self) -> None:
        """An unknown access setting names the value and the accepted ones."""
        with pytest.raises(ConfigError) as caught:
            Tmp("block", access="read")
        assert str(caught.value) == (
            "Tmp(access=...): 'read' is not a tmp access setting; accepted: 'read-write', 'write'."
        )

    def test_access_comes_from_the_environment_when_code_does_not_say(self, tmp_path: Path) -> None:
        """LAMBDAGUARD_TMP_ACCESS=write with LAMBDAGUARD_TMP=block lets reads through."""
        (tmp_path / "in.txt").write_text("readable")
        outcome = run_scenario(
            f"""
            from lambdaguard import guard
            with guard():
                text = open({str(tmp_path / "in.txt")!r}).read()
                try:
                    open({str(tmp_path / "out.txt")!r}, "w")
                    wrote = True
                except PermissionError:
                    wrote = False
            result([text, wrote])
            """,
            env={"LAMBDAGUARD_TMP": "block", "LAMBDAGUARD_TMP_ACCESS": "write"},
        )
        assert outcome.result == ["readable", False]
        assert not (tmp_path / "out.txt").exists()

    def test_bad_access_variable_fails_when_the_policy_is_built(self) -> None:
        """LAMBDAGUARD_TMP_ACCESS=bogus raises ConfigError naming the variable."""
        outcome = run_scenario(
            """
            from lambdaguard import ConfigError, guard
            try:
                guard(tmp="block")
            except ConfigError as error:
                result(str(error))
            """,
            env={"LAMBDAGUARD_TMP_ACCESS": "bogus"},
        )
        assert outcome.result == (
            "LAMBDAGUARD_TMP_ACCESS: 'bogus' is not a tmp access setting; accepted: "
            "'read-write', 'write'."
        )


class TestModes:
    def test_alert_lets_the_write_happen_and_reports_it_once(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """In alert mode the file is written, and one line (not one per layer) is logged."""
        with guard(tmp="alert"):
            (tmp_path / "a.txt").write_text("written")
        assert (tmp_path / "a.txt").read_text() == "written"
        lines = violation_lines(capsys.readouterr().out)
        assert [(v["mode"], v["action"]) for v in lines] == [("alert", "write")]

    def test_alert_mode_shutil_copy_reports_each_operation_once(
        self, tmp_path: Path, outside_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A high-level shutil event adds no second line: the write itself is reported."""
        (outside_dir / "src").write_text("x")
        with guard(tmp="alert"):
            shutil_copyfile(outside_dir / "src", tmp_path / "dst")
        lines = violation_lines(capsys.readouterr().out)
        assert [(v["action"], v["target"]) for v in lines] == [("write", str(tmp_path / "dst"))]


def shutil_copyfile(src: Path, dst: Path) -> None:
    import shutil

    shutil.copyfile(src, dst)


class TestTempfileDirectory:
    def test_tempfile_directory_elsewhere_is_governed_too(self, outside_dir: Path) -> None:
        """With TMPDIR outside /tmp, tempfile's directory is under the tmp policy as well."""
        outcome = run_scenario(
            """
            import tempfile
            from lambdaguard import guard
            tempfile.gettempdir()
            with guard(tmp="block"):
                try:
                    tempfile.NamedTemporaryFile()
                    made = True
                except PermissionError:
                    made = False
            result([tempfile.gettempdir(), made])
            """,
            env={"TMPDIR": str(outside_dir)},
        )
        assert outcome.result == [str(outside_dir), False]
        assert os.listdir(outside_dir) == []

    def test_a_directory_tempfile_has_settled_on_is_governed(self, outside_dir: Path) -> None:
        """tempfile.tempdir, once set (here by the application, with no TMPDIR), is under the tmp policy."""
        env = {k: "" for k in ("TMPDIR", "TEMP", "TMP")}
        outcome = run_scenario(
            f"""
            import tempfile
            from lambdaguard import guard
            tempfile.tempdir = {str(outside_dir)!r}
            with guard(tmp="block"):
                try:
                    tempfile.NamedTemporaryFile()
                    made = True
                except PermissionError:
                    made = False
            result(made)
            """,
            env=env,
        )
        assert outcome.result is False, outcome
        assert os.listdir(outside_dir) == []

    def test_building_the_rule_without_tmpdir_does_not_probe(self) -> None:
        """With tempfile imported and no TMPDIR, the rule is built without gettempdir()'s probe file, and /tmp is governed."""
        env = {k: "" for k in ("TMPDIR", "TEMP", "TMP")}
        outcome = run_scenario(
            """
            import os, tempfile
            from lambdaguard import Tmp
            rule = Tmp("block")
            result([tempfile.tempdir, rule.governs("/tmp/x")])
            """,
            env=env,
        )
        assert outcome.result == [None, True], outcome

    def test_first_gettempdir_inside_the_guard_does_not_trip_it(self, outside_dir: Path) -> None:
        """Building the rule probes tempfile's directory as lambdaguard's own work."""
        outcome = run_scenario(
            """
            from lambdaguard import guard
            with guard(tmp="block"):
                pass
            result("ok")
            """,
            env={"TMPDIR": str(outside_dir)},
        )
        assert outcome.result == "ok"
        assert outcome.violations == []
        assert sys.executable
