"""Issue 18, files/training/kernel API/CLI: no lost file, no bomb, no traceback, no silent
wrong number. Each test would fail on the behaviour the issue reported."""
from __future__ import annotations

import errno
import gzip
import importlib.util
import io
import os
import stat
import struct
import sys
import time
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from symprop.cli import main
from symprop.codegen import files
from symprop.codegen.network import load_network, network_path
from symprop.generated import layers
from symprop.symbolic.checker import load_claims
from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import parse_net
from symprop.symbolic.networkfile import load_network as load_network_file
from symprop.training import train as training
from symprop.training.datasets import read_idx

MOONS = "affine(2,1) binary-cross-entropy"
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def idx_header(type_code, shape):
    return bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape)


# ------------------------------------------------------------------------------ lost data
def fake_result():
    net = types.SimpleNamespace(SPEC=MOONS, PARAM_NAMES=("W1", "b1"))
    return types.SimpleNamespace(
        net=net, params_by_name=lambda: {"W1": np.ones((2, 1)), "b1": np.zeros(1)},
        scaling=training.Scaling(np.zeros(2), np.ones(2)))


def test_failed_save_keeps_the_old_weights_file(tmp_path, monkeypatch):
    target = tmp_path / "model.npz"
    dataset = types.SimpleNamespace(name="moons", n_classes=2)
    training.save_model(target, fake_result(), dataset, training.Config())
    before = target.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(training.np, "savez", disk_full)
    with pytest.raises(SympropError, match="No space left on device.*unchanged"):
        training.save_model(target, fake_result(), dataset, training.Config())
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]   # no temporary file left
    assert training.load_model(target).spec == MOONS


def copied_module(tmp_path, edit):
    text = (files.GENERATED / "net_moons_logistic.py").read_text()
    path = tmp_path / "copy_of_net.py"
    path.write_text(edit(text))
    return path


def import_warnings(path):
    spec = importlib.util.spec_from_file_location(f"edited_{abs(hash(path))}_{time.time_ns()}", path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec.loader.exec_module(module)
    return [str(w.message) for w in caught if "edited by hand" in str(w.message)]


@pytest.mark.parametrize("edit, problem", [
    (lambda t: "import os\n" + t, "header is missing or damaged"),
    (lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("# Body hash")) + "\n",
     "header is missing or damaged"),
    (lambda t: "# Body hash: 0000000000000000\n" + t, "header is missing or damaged"),
    (lambda t: t.replace("MAX_STEPS = 2**31 - 1", "MAX_STEPS = 2**31"), "body does not match"),
])
def test_hand_edit_check_cannot_be_bypassed(tmp_path, edit, problem):
    path = copied_module(tmp_path, edit)
    messages = import_warnings(path)
    assert len(messages) == 1 and problem in messages[0]
    assert files.recorded_body_hash(path.read_text()) != files.body_hash(files.generated_body(path.read_text())) \
        or "body" not in problem


def test_untouched_module_does_not_warn(tmp_path):
    path = copied_module(tmp_path, lambda t: t)
    assert import_warnings(path) == []
    assert files.recorded_body_hash(path.read_text()) == files.body_hash(files.generated_body(path.read_text()))


@given(st.integers(0, 59), st.integers(0, 59), st.sampled_from(["relu", "affine", "sigmoid_backward"]))
@FAST
def test_kernels_refuse_outputs_that_overlap_inputs_or_compute_right(start_in, start_out, kernel):
    """Inputs and out as views into one buffer: either refused, or the same numbers as on
    separate copies, with the input unchanged."""
    buffer = np.linspace(-3, 3, 72)
    x = buffer[start_in:start_in + 12].reshape(3, 4)
    out = buffer[start_out:start_out + 12].reshape(3, 4)
    x_before = x.copy()
    W, b = np.linspace(-1, 1, 16).reshape(4, 4), np.full(4, 0.5)
    call = {"relu": lambda xs, o: layers.relu_forward(xs, out=o),
            "affine": lambda xs, o: layers.affine_forward(xs, W, b, out=o),
            "sigmoid_backward": lambda xs, o: layers.sigmoid_backward(xs, np.full((3, 4), 0.3), dx=o)}[kernel]
    expected = call(x_before.copy(), None)
    try:
        got = call(x, out)
    except ValueError as exc:
        assert np.shares_memory(x, out) and "shares memory" in str(exc)
        return
    assert not np.shares_memory(x, out)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(x, x_before)


def test_sgd_step_refuses_parameters_sharing_memory_with_the_data():
    net = load_network(MOONS)
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="sgd_step: W1 shares memory with X"):
        net.sgd_step(X.reshape(-1)[:2].reshape(2, 1), np.zeros(1), X, np.ones((4, 1)), 0.1)


def test_plot_path_without_suffix_is_reported_as_written_and_a_folder_is_refused_first(tmp_path, capsys):
    assert main(["train", "--data", "moons", "--epochs", "1", "--no-progress",
                 "--plot", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "is a folder" in err
    assert main(["train", "--data", "moons", "--epochs", "1", "--no-progress",
                 "--plot", str(tmp_path / "curves")]) == 0
    assert f"wrote plot {tmp_path / 'curves.png'}" in capsys.readouterr().out
    assert (tmp_path / "curves.png").is_file()


def test_save_folder_is_checked_before_training(tmp_path, capsys):
    assert main(["train", "--data", "moons", "--save", str(tmp_path / "missing" / "m.npz")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "does not exist" in err


# ------------------------------------------------------------------------------ bombs
def test_gzip_idx_bomb_is_refused_within_a_second(tmp_path):
    """An honest header (100 bytes of labels) followed by 1 GB of zeros in 64 gzip members."""
    member = gzip.compress(bytes(16 * 2**20))
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_header(0x08, (100,)) + bytes(100)) + member * 64)
    start = time.perf_counter()
    with pytest.raises(SympropError, match="unexpected bytes after the data"):
        read_idx(path)
    assert time.perf_counter() - start < 1.0


def test_idx_header_announcing_gigabytes_is_refused_before_reading(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_header(0x08, (60000, 2000, 2000))))
    with pytest.raises(SympropError, match="more than the .* symprop reads"):
        read_idx(path)


@pytest.mark.parametrize("shape", [(0, 0x0B000000, 0x02000000), (0,), (3, 0)])
def test_idx_header_with_a_zero_dimension_is_refused(tmp_path, shape):
    """Found by the fuzz run: a 0 beside huge dimensions made numpy's reshape raise ValueError."""
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_header(0x08, shape))
    with pytest.raises(SympropError, match=r"images-idx3-ubyte: the header announces shape .* no data"):
        read_idx(path)


def test_float_labels_and_nan_pixels_are_refused(tmp_path):
    from symprop.training.datasets import load_mnist
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_header(0x0D, (10, 2, 2)) + np.ones(40, ">f4").tobytes())
    labels = np.zeros(10, ">f4")
    labels[3] = np.nan
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_header(0x0D, (10,)) + labels.tobytes())
    with pytest.raises(SympropError, match="labels must be integers"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_header(0x08, (10,)) + bytes(10))
    pixels = np.ones(40, ">f4")
    pixels[7] = np.inf
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_header(0x0D, (10, 2, 2)) + pixels.tobytes())
    with pytest.raises(SympropError, match="pixel 7 of the data is inf"):
        load_mnist(tmp_path)


def saved_weights(tmp_path):
    path = tmp_path / "m.npz"
    training.save_model(path, fake_result(), types.SimpleNamespace(name="moons", n_classes=2), training.Config())
    return path


def test_unused_npz_member_is_never_decompressed(tmp_path):
    """A member no field names, with a corrupt body: reading it would fail, so loading proves
    it is skipped (a 3 GB member costs nothing either)."""
    path = saved_weights(tmp_path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("junk.npy", b"\x93NUMPY" + os.urandom(4096))
    raw = bytearray(path.read_bytes())
    at = raw.rindex(b"\x93NUMPY")
    raw[at + 100: at + 200] = bytes(100)     # break the member's CRC
    path.write_bytes(bytes(raw))
    assert training.load_model(path).params["W1"].shape == (2, 1)


def test_npz_member_declaring_a_huge_size_or_shape_is_refused(tmp_path, monkeypatch):
    path = saved_weights(tmp_path)
    monkeypatch.setattr(training, "MAX_MEMBER_BYTES", 64)
    with pytest.raises(SympropError, match="expands to .* more than the 64"):
        training.load_model(path)
    monkeypatch.undo()
    lying = tmp_path / "lying.npz"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(lying, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "param_W1.npy":  # a header announcing 80 MB over 16 bytes of data
                header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (9999999, 1), }"
                data = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + header.ljust(117) + b"\n" + bytes(16)
            target.writestr(name, data)
    with pytest.raises(SympropError, match="field param_W1 is damaged"):
        training.load_model(lying)


FIELD_VALUES = st.one_of(
    hnp.arrays(st.sampled_from([np.float64, np.int64, np.bool_, "U3", np.complex128]),
               hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)),
    st.just(np.array(np.nan)), st.just(np.array([np.inf, 1.0])))


@given(st.sampled_from(["format_version", "spec", "param_names", "dataset", "n_classes", "dtype",
                        "scaling_mean", "scaling_scale", "param_W1"]), FIELD_VALUES)
@FAST
def test_malformed_weights_fields_give_one_line_or_load(tmp_path, field, value):
    good = saved_weights(tmp_path)
    with np.load(good) as archive:
        data = {key: archive[key] for key in archive.files}
    data[field] = value
    path = tmp_path / "bad.npz"
    np.savez(path, **data)
    try:
        model = training.load_model(path)
    except SympropError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert model.dtype in training.DTYPES and model.n_classes >= 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_and_device_paths_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    readers = [read_idx, training.load_model, load_network_file, load_claims]
    start = time.perf_counter()
    for reader in readers:
        with pytest.raises(SympropError, match="not a regular file"):
            reader(fifo)
    with pytest.raises(SympropError, match="not a regular file"):
        load_network_file("/dev/zero")
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("reader", [load_network_file, load_claims])
def test_deeply_nested_toml_is_one_line(tmp_path, reader):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 500 + "]" * 500 + "\n")
    with pytest.raises(SympropError, match="nested too deeply"):
        reader(path)


# ------------------------------------------------------------------------------ generate, cache
def test_generate_output_onto_folder_binary_file_and_unwritable_place(tmp_path, capsys):
    spec = "affine(2,3) tanh affine(3,1) mse"
    assert main(["generate", "--net", spec, "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    binary = tmp_path / "blob.py"
    blob = os.urandom(2000) + b"\xff\xfe"
    binary.write_bytes(blob)  # not a generated module: refused, not replaced
    assert main(["generate", "--net", spec, "-o", str(binary)]) == 2
    assert "not a generated module" in capsys.readouterr().err and binary.read_bytes() == blob
    stale = tmp_path / "stale.py"
    assert main(["generate", "--net", "affine(2,1) mse", "-o", str(stale)]) == 0
    assert main(["generate", "--net", spec, "-o", str(stale)]) == 0  # an older module is replaced
    assert "Fused kernels" in stale.read_text() and "tanh" in stale.read_text()
    assert main(["generate", "--net", spec, "-o", str(tmp_path / "no" / "such" / "x.py")]) == 0  # folders made
    blocker = tmp_path / "file"
    blocker.write_text("x")
    capsys.readouterr()
    assert main(["generate", "--net", spec, "-o", str(blocker / "x.py")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot write" in err


def test_generated_files_get_the_umask_mode_and_old_leftovers_are_removed(tmp_path):
    target = tmp_path / "module.py"
    old = tmp_path / ".module.py.abc123.tmp"
    fresh = tmp_path / ".module.py.def456.tmp"
    old.write_text("partial")
    fresh.write_text("partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    files.write_if_changed(target, "x = 1\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert not old.exists() and fresh.exists()


def test_garbage_in_a_generated_directory_is_reported_and_repaired(tmp_path, capsys):
    assert main(["generate", "--directory", str(tmp_path)]) == 0
    (tmp_path / "net_moons_logistic.py").write_bytes(b"\x00\xff garbage \x80" * 50)
    capsys.readouterr()
    assert main(["generate", "--check", "--directory", str(tmp_path)]) == 1
    assert main(["generate", "--directory", str(tmp_path)]) == 0
    assert main(["generate", "--check", "--directory", str(tmp_path)]) == 0


def test_garbage_in_a_cached_network_module_is_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path))
    spec = "affine(2,2) tanh affine(2,1) mse"
    path, _ = network_path(parse_net(spec).spec)
    load_network(spec)
    path.write_bytes(b"\x00\xff\xfe garbage")
    sys.modules.pop(f"symprop_{path.stem}")
    assert load_network(spec).SPEC == spec


def test_corrupt_module_import_is_one_line(tmp_path):
    from symprop.codegen.files import import_generated
    path = tmp_path / "bad.py"
    path.write_bytes(b"x = 1\x00\xff\n")
    with pytest.raises(SympropError, match="bad.py is corrupt.*rewrite it with: symprop generate"):
        import_generated("symprop_test_bad_module", path)


@pytest.mark.parametrize("code, words", [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")])
def test_read_only_symprop_cache_is_one_line(tmp_path, monkeypatch, code, words):
    """As root a folder's mode does not stop writes, so the refusal is simulated at the write."""
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path / "cache"))

    def read_only(path, text):
        raise OSError(code, words)
    monkeypatch.setattr(files, "write_if_changed", read_only)
    with pytest.raises(SympropError, match=f"{words}; point SYMPROP_CACHE"):
        load_network("affine(2,6) tanh affine(6,1) mse")


def test_numba_cache_on_a_full_disk_warns_once_and_the_kernel_still_runs(tmp_path):
    """A real full disk for numba's cache writes: the child may write at most 2 KiB per file
    (RLIMIT_FSIZE; SIGXFSZ ignored, so a longer write fails with EFBIG as on a full disk)."""
    import resource
    import signal
    import subprocess

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    code = ("import numpy as np\n"
            "from symprop.generated import net_moons_logistic as net\n"
            "W, b = np.full((2, 1), 0.5), np.zeros(1)\n"
            "X, T = np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([[1.0], [0.0]])\n"
            "print(net.sgd_step(W, b, X, T, 0.1), W.ravel().tolist())\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                            env=env, preexec_fn=small_files, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.count("numba could not write its kernel cache") == 1, result.stderr[-3000:]
    # the step itself is right: the loss before the step (mean binary cross-entropy of the logits)
    z = np.array([1.0 * 0.5 + 2.0 * 0.5, -1.0 * 0.5 + 0.5 * 0.5])
    expected = float(np.mean(np.logaddexp(0, z) - np.array([1.0, 0.0]) * z))
    assert abs(float(result.stdout.split()[0]) - expected) < 1e-12


def test_symprop_cache_on_a_file_or_a_full_disk_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("SYMPROP_CACHE", str(blocker))
    with pytest.raises(SympropError, match="SYMPROP_CACHE=.*not-a-folder"):
        load_network("affine(2,4) tanh affine(4,1) mse")
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path / "cache"))

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files, "write_if_changed", disk_full)
    with pytest.raises(SympropError, match="No space left on device; point SYMPROP_CACHE"):
        load_network("affine(2,5) tanh affine(5,1) mse")


def test_spaces_in_layer_arguments_name_the_built_in_network():
    spec = "affine(784, 100)  relu affine( 100,10 ) softmax-cross-entropy"
    assert network_path(parse_net(spec).spec)[1] == "two_layer_relu"
    assert load_network(spec).SPEC == "affine(784,100) relu affine(100,10) softmax-cross-entropy"


# ------------------------------------------------------------------------------ kernel API
@given(st.one_of(st.text(max_size=5), st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(-10**400, 10**400), st.none(), st.booleans(), st.complex_numbers()))
@FAST
def test_learning_rate_is_a_finite_number_or_one_value_error(lr):
    net = load_network(MOONS)
    W, b = np.zeros((2, 1)), np.zeros(1)
    try:
        loss = net.sgd_step(W, b, np.ones((4, 2)), np.ones((4, 1)), lr)
    except ValueError as exc:
        assert "sgd_step: lr must be" in str(exc)
        return
    assert np.isfinite(loss)


@pytest.mark.parametrize("steps", [10**30, 2**31, -1, 1.5, "3", True])
def test_step_count_outside_the_loop_counter_is_refused(steps):
    net = load_network(MOONS)
    with pytest.raises(ValueError, match="sgd_steps: steps must be"):
        net.sgd_steps(np.zeros((2, 1)), np.zeros(1), np.ones((4, 2)), np.ones((4, 1)), 0.1, steps)


def test_read_only_and_strided_weights_work_where_nothing_is_updated():
    net = load_network(MOONS)
    X, T = np.linspace(-1, 1, 8).reshape(4, 2), np.ones((4, 1))
    W = np.asfortranarray(np.array([[0.5, 0.1], [-0.3, 0.2]]))[:, :1]
    b = np.full(1, 0.2)
    W.flags.writeable = b.flags.writeable = False
    expected = net.loss_and_grads(np.ascontiguousarray(W), b.copy(), X, T)
    np.testing.assert_array_equal(net.forward(W, b, X), net.forward(np.ascontiguousarray(W), b.copy(), X))
    for got, want in zip(net.loss_and_grads(W, b, X, T), expected):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="updated in place"):
        net.sgd_step(W, b, X, T, 0.1)


def test_empty_batch_is_refused_not_nan():
    net = load_network(MOONS)
    with pytest.raises(ValueError, match="batch >= 1"):
        net.loss_and_grads(np.zeros((2, 1)), np.zeros(1), np.ones((0, 2)), np.ones((0, 1)))
    with pytest.raises(ValueError, match="at least one row"):
        layers.softmax_cross_entropy_forward(np.ones((0, 3)), np.ones((0, 3)))


# ------------------------------------------------------------------------------ CLI
def test_negative_seed_and_argparse_errors_are_one_line(capsys):
    assert main(["train", "--seed", "-1"]) == 2
    assert "--seed must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epochs", "many"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "invalid int" in err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from symprop.cli.commands import derive

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(derive, "run", interrupted)
    assert main(["derive", "sigmoid"]) == 130
    assert capsys.readouterr().err == "symprop: interrupted\n"


def test_non_utf8_terminal_prints_instead_of_crashing():
    import subprocess
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    result = subprocess.run([sys.executable, "-m", "symprop", "example", "show", "mazur-2-2-2"],
                            capture_output=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-500:]
    assert b"Traceback" not in result.stderr


def test_a_changed_symprop_cache_loads_the_module_from_the_new_folder(tmp_path, monkeypatch):
    """The module imported from the old folder is not handed out for a file it did not come from
    (the full suite met this: a hand edit of the new folder's file went unnoticed)."""
    spec = "affine(2,7) tanh affine(7,1) mse"
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path / "a"))
    first = load_network(spec)
    monkeypatch.setenv("SYMPROP_CACHE", str(tmp_path / "b"))
    second = load_network(spec)
    assert Path(first.__file__).is_relative_to(tmp_path / "a")
    assert Path(second.__file__).is_relative_to(tmp_path / "b")
