"""The kernels of `kit lab` and `kit demo` (kit.lab.KERNELS): TCP on 127.0.0.1, encrypted with
CurveZMQ keys the kernel manager makes, never two kernels on one port.

JupyterLab reopening a student's tabs starts several kernels at the same moment; with local
sockets those picked the same socket files and answered with "Invalid Signature" or never
connected. Here six kernels start at once through JupyterLab's REST API, and each must run its
own cell over its own websocket; a client without the kernel's keys gets no answer at all.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from jupyter_client.blocking import BlockingKernelClient
from lab_server import Lab, running_lab
from websockets.sync.client import connect

from kit import demo, lab

KERNELS = 6
PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def at_once(work: Callable[[int], object], count: int = KERNELS) -> list[object]:
    """`work(0)` … `work(count - 1)`, each in its own thread, released at the same moment."""
    start = threading.Barrier(count)

    def released(index: int) -> object:
        start.wait()
        return work(index)

    with ThreadPoolExecutor(count) as pool:
        return [future.result() for future in [pool.submit(released, i) for i in range(count)]]


def run_cell(jl: Lab, kernel: str, code: str) -> str:
    """Run `code` in `kernel` over its websocket, as JupyterLab's front end does; what it
    printed (the server signs the message for the kernel)."""
    request = str(uuid.uuid4())
    message = {
        "header": {
            "msg_id": request,
            "msg_type": "execute_request",
            "session": str(uuid.uuid4()),
            "username": "student",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
        "channel": "shell",
        "buffers": [],
    }
    printed, replied, idle = [], None, False
    with connect(jl.websocket_url(f"/api/kernels/{kernel}/channels"), open_timeout=30) as ws:
        ws.send(json.dumps(message))
        while replied is None or not idle:
            answer = json.loads(ws.recv(timeout=30))
            if answer.get("parent_header", {}).get("msg_id") != request:
                continue
            kind, content = answer["msg_type"], answer["content"]
            if kind == "stream":
                printed.append(content["text"])
            elif kind == "execute_reply":
                replied = content["status"]
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    assert replied == "ok", printed
    return "".join(printed)


def answers_kernel_info(info: dict[str, object]) -> bool:
    """Whether the kernel behind `info` answers a kernel_info request within a few seconds."""
    client = BlockingKernelClient()
    client.load_connection_info(info)
    client.start_channels(hb=False)
    try:
        request = client.kernel_info()
        while True:
            reply = client.get_shell_msg(timeout=3)
            if reply["parent_header"].get("msg_id") == request:
                return True
    except queue.Empty:
        return False
    finally:
        client.stop_channels()


@pytest.mark.timeout(120)
def test_six_kernels_started_at_once_each_answer_for_themselves(tmp_path: Path) -> None:
    with running_lab(tmp_path) as jl:
        kernels = at_once(
            lambda _: jl.api("POST", "/api/kernels", json={"name": "python3"}).json()["id"]
        )
        assert len(set(kernels)) == KERNELS
        shown = at_once(
            lambda i: run_cell(jl, str(kernels[i]), f"import os; print({i} * 111, os.getpid())")
        )
        files = [json.loads((jl.runtime / f"kernel-{k}.json").read_text()) for k in kernels]
        without_keys = {
            k: v for k, v in files[0].items() if k not in ("curve_publickey", "curve_secretkey")
        }
        assert answers_kernel_info(files[0])
        assert not answers_kernel_info(without_keys)  # CurveZMQ turns away a client with no keys
        jl.api("POST", f"/api/kernels/{kernels[0]}/restart")  # same keys, a fresh process
        after_restart = run_cell(jl, str(kernels[0]), "print(6 * 7)")
        for kernel in kernels:
            jl.api("DELETE", f"/api/kernels/{kernel}")

    printed = [str(text).split() for text in shown]
    assert [int(number) for number, _ in printed] == [i * 111 for i in range(KERNELS)]
    assert len({pid for _, pid in printed}) == KERNELS  # six processes, each its own answer
    assert after_restart == "42\n"
    for info in files:
        assert (info["transport"], info["ip"]) == ("tcp", "127.0.0.1")
        assert len(info["curve_publickey"]) == len(info["curve_secretkey"]) == 40  # Z85 keys
    assert len({info[port] for info in files for port in PORTS}) == KERNELS * len(PORTS)
    log = jl.log.read_text(errors="replace")
    assert "Invalid Signature" not in log and "without encryption" not in log


def in_kernel_transport() -> str:
    """A cell that prints how the kernel it runs in is reached, as the kernel itself sees it."""
    return (
        "import zmq\n"
        "from ipykernel.kernelapp import IPKernelApp\n"
        "app = IPKernelApp.instance()\n"
        "shell = app.shell_socket\n"
        "print(app.transport, app.ip, shell.getsockopt(zmq.MECHANISM) == zmq.CURVE,\n"
        "      shell.getsockopt(zmq.CURVE_SERVER))"
    )


@pytest.mark.timeout(60)
def test_kit_demo_kernels_are_encrypted_too(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(in_kernel_transport())])
    client = demo.notebook_client(notebook, tmp_path)
    manager = client.create_kernel_manager()  # the one execute() then starts the kernel with
    assert (manager.transport, manager.ip) == ("tcp", "127.0.0.1")
    assert manager.transport_encryption == lab.KERNELS["transport_encryption"] == "required"
    client.execute()
    assert notebook.cells[0].outputs[0]["text"] == "tcp 127.0.0.1 True 1\n"
    assert "without encryption" not in capfd.readouterr().err  # the demo's console stays quiet


@pytest.mark.timeout(60)
def test_a_kernel_that_cannot_encrypt_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernelspec that does not declare CurveZMQ (an old one, say): no kernel in the clear.
    spec = tmp_path / "kernels" / "plain"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Plain", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    client = demo.notebook_client(notebook, tmp_path)
    client.kernel_name = "plain"
    with pytest.raises(RuntimeError, match="transport_encryption='required'"):
        client.execute()
    assert not notebook.cells[0].outputs
