"""``-D`` reads a request body only from the data directory the service was given."""

from __future__ import annotations

import os
import pathlib

import prometheus_client as prom
import pytest

from libs import errors
from services.webhook_runner.hey import generating, parsing, recording

URL = "http://127.0.0.1:1/"  # never reached: every case here fails or stops before sending


def with_body_file(name: str) -> parsing.Options:
    return parsing.parse_args(["hey", "-n", "1", "-c", "1", "-D", name, URL])


@pytest.fixture
def data_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    bodies = tmp_path / "bodies"
    (bodies / "nested").mkdir(parents=True)
    (bodies / "order.json").write_bytes(b'{"id": 1}')
    (bodies / "nested" / "item.json").write_bytes(b"[]")
    (tmp_path / "secret.txt").write_bytes(b"SECRET")
    return bodies


async def test_without_a_data_directory_d_is_refused() -> None:
    registry = prom.CollectorRegistry()
    with pytest.raises(generating.BodyFileError) as caught:
        await generating.run(
            with_body_file("order.json"),
            metrics=recording.Metrics(registry),
            canary="podinfo.test",
        )
    assert str(caught.value) == (
        "hey -D is disabled: set SLUICE_LOADTESTER_DATA_DIR to a directory of request bodies"
    )
    assert isinstance(caught.value, errors.PermanentError)
    labels = {"canary": "podinfo.test", "result": "failed"}
    assert registry.get_sample_value("sluice_loadtest_runs_total", labels) == 1
    assert registry.get_sample_value("sluice_loadtest_running", {"canary": "podinfo.test"}) == 0


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("order.json", b'{"id": 1}'),
        ("./order.json", b'{"id": 1}'),
        ("nested/item.json", b"[]"),
        ("nested/../order.json", b'{"id": 1}'),
    ],
)
async def test_files_inside_the_data_directory(
    data_dir: pathlib.Path, name: str, body: bytes
) -> None:
    assert await generating.read_body(with_body_file(name), data_dir) == body


async def test_an_absolute_path_inside_the_data_directory(data_dir: pathlib.Path) -> None:
    options = with_body_file(str(data_dir / "order.json"))
    assert await generating.read_body(options, data_dir) == b'{"id": 1}'


@pytest.mark.parametrize("name", ["../secret.txt", "nested/../../secret.txt", "/etc/passwd"])
async def test_paths_outside_the_data_directory_are_refused(
    data_dir: pathlib.Path, name: str
) -> None:
    with pytest.raises(generating.BodyFileError, match="is outside SLUICE_LOADTESTER_DATA_DIR"):
        await generating.read_body(with_body_file(name), data_dir)


async def test_a_symbolic_link_out_of_the_data_directory_is_refused(
    data_dir: pathlib.Path,
) -> None:
    os.symlink(data_dir.parent / "secret.txt", data_dir / "link.txt")
    with pytest.raises(generating.BodyFileError, match="is outside"):
        await generating.read_body(with_body_file("link.txt"), data_dir)


@pytest.mark.parametrize("name", ["missing.json", "nested", "."])
async def test_only_regular_files(data_dir: pathlib.Path, name: str) -> None:
    with pytest.raises(generating.BodyFileError, match="is not a file in"):
        await generating.read_body(with_body_file(name), data_dir)


async def test_a_missing_data_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(
        generating.BodyFileError,
        match="cannot use SLUICE_LOADTESTER_DATA_DIR: no such file or directory",
    ):
        await generating.read_body(with_body_file("order.json"), tmp_path / "absent")
