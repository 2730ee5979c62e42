"""Tests of the model zoo generators (random, canonical, real families)."""

from __future__ import annotations

import collections
import math
import pickle

import pytest

from inferperf.errors import ConfigError
from inferperf.zoo import (
    MAX_MACS,
    MAX_PARAMS,
    ZooEntry,
    find_entry,
    get_generator,
    iter_zoo,
    zoo_families,
)

SYNTHETIC = zoo_families("random") + zoo_families("canonical")


def _first(family: str, n: int, seed: int = 0) -> list[ZooEntry]:
    return list(iter_zoo("all", families=[family], per_family=n, seed=seed))


def _is_pow2(x: int) -> bool:
    return x >= 1 and x & (x - 1) == 0


# ------------------------------------------------------------------------------------------------ iteration


def test_same_seed_same_entries_and_other_seed_differs() -> None:
    a = list(iter_zoo("all", limit=120, batch_sizes=(1, 8), seed=3))
    b = list(iter_zoo("all", limit=120, batch_sizes=(1, 8), seed=3))
    assert [e.key for e in a] == [e.key for e in b]
    assert [e.params for e in a] == [e.params for e in b]
    assert len({e.key for e in a}) == len(a), "keys must be unique"
    c = list(iter_zoo("all", limit=120, batch_sizes=(1, 8), seed=4))
    sampled = [(x, y) for x, y in zip(a, c, strict=True) if x.zoo != "canonical"]
    assert not {x.key for x, _ in sampled} & {y.key for _, y in sampled}
    assert sum(x.params != y.params for x, y in sampled) > 0.9 * len(sampled)


def test_round_robin_interleaves_families_and_keeps_batch_sizes_together() -> None:
    families = zoo_families("all")
    assert {"mlp", "plain_cnn", "random_dag", "canonical_lstm", "resnet", "bert", "gpt2"} <= set(families)
    entries = list(iter_zoo("all", limit=2 * len(families)))
    assert [e.family for e in entries[: len(families)]] == families
    assert [e.family for e in entries[len(families):]] == families
    pairs = list(iter_zoo("random", limit=8, batch_sizes=(1, 4)))
    assert [e.batch_size for e in pairs] == [1, 4] * 4
    for one, four in zip(pairs[::2], pairs[1::2], strict=True):
        assert one.params == four.params and one.family == four.family
        assert one.key.removesuffix("-b1") == four.key.removesuffix("-b4")


def test_limit_counts_entries_and_finite_grids_drop_out() -> None:
    assert len(list(iter_zoo("all", limit=7, batch_sizes=(1, 2, 4)))) == 7
    fc = get_generator("canonical_fc")
    grid = list(iter_zoo("canonical", families=["canonical_fc"]))
    assert len(grid) == len(fc.points()) > 0
    assert fc.excluded_points(), "the 16×4096 corner of the FC grid is over the weights budget"
    mixed = list(iter_zoo("all", families=["canonical_fc", "mlp"], per_family=len(grid) + 5))
    counts = collections.Counter(e.family for e in mixed)
    assert counts == {"canonical_fc": len(grid), "mlp": len(grid) + 5}


def test_iterating_imports_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    code = ("import sys; from inferperf.zoo import iter_zoo; n = len(list(iter_zoo(limit=300))); "
            "print(n, 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["300", "False", "False"]


def test_bad_arguments_raise_config_errors() -> None:
    with pytest.raises(ConfigError):
        list(iter_zoo("imaginary", limit=1))
    with pytest.raises(ConfigError):
        list(iter_zoo("all", families=["no_such_family"], limit=1))
    with pytest.raises(ConfigError):
        list(iter_zoo("random", families=["bert"], limit=1))
    with pytest.raises(ConfigError):
        list(iter_zoo("all", batch_sizes=(0,), limit=1))


def test_entries_pickle_and_round_trip_through_dict_and_key() -> None:
    entries = list(iter_zoo("all", limit=len(zoo_families()) + 3, batch_sizes=(2,), seed=1))
    for e in entries:
        assert pickle.loads(pickle.dumps(e)) == e
        assert ZooEntry.from_dict(e.to_dict()) == e
        found = find_entry(e.key)
        assert (found.params, found.seed, found.batch_size, found.family) == (e.params, e.seed, 2, e.family)
    assert len({hash(e) for e in entries}) == len(entries)
    sampled = next(e for e in entries if e.family == "random_dag")
    tampered = sampled.key.replace(sampled.key.split("-")[1], "00000000")
    with pytest.raises(ConfigError):
        find_entry(tampered)
    with pytest.raises(ConfigError):
        find_entry("canonical_fc/d3-w7-b1")
    with pytest.raises(ConfigError):
        find_entry("not a key")


# ------------------------------------------------------------------------------------------------ ranges


def test_mlp_parameters_follow_cs230_ranges() -> None:
    entries = _first("mlp", 400)
    depths, exps = set(), set()
    for e in entries:
        widths = e.params["widths"]
        assert 3 <= len(widths) <= 10
        for w in [*widths, e.params["in_features"]]:
            assert _is_pow2(w) and 1 <= w <= 2**14
            exps.add(int(math.log2(w)))
        depths.add(len(widths))
    assert depths == set(range(3, 11))
    assert {0, 14} <= exps, "the sampler must reach both ends of the width range"


def test_plain_cnn_parameters_follow_cs230_ranges() -> None:
    entries = _first("plain_cnn", 300)
    exps, kernels, depths = set(), set(), set()
    for e in entries:
        layers = e.params["layers"]
        depths.add(len(layers))
        for layer in layers:
            assert _is_pow2(layer["cout"]) and layer["cout"] <= 2**10
            exps.add(int(math.log2(layer["cout"])))
            kernels.add(layer["k"])
    assert depths == set(range(3, 11))
    assert {0, 10} <= exps
    assert kernels == {1, 3, 5, 7}


def test_synthetic_specs_respect_the_budget() -> None:
    for family in SYNTHETIC:
        entries = _first(family, 150)
        assert entries, family
        for e in entries:
            assert 0 < e.macs <= MAX_MACS, e.key
            assert 0 < e.params["weights"] <= MAX_PARAMS, e.key
    for family in zoo_families("canonical"):
        for p in get_generator(family).excluded_points():
            assert p["macs"] > MAX_MACS or p["weights"] > MAX_PARAMS


def _counted_macs(module, inputs) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(**inputs)
    return counter.get_total_flops() / 2


def _uncounted_sdpa(entry: ZooEntry) -> int:
    """FlopCounterMode does not count CPU scaled_dot_product_attention: the QKᵀ and AV products."""
    p = entry.params
    if entry.family == "canonical_transformer":  # nn.MultiheadAttention calls SDPA
        return p["layers"] * 2 * p["seq_len"] ** 2 * p["dim"]
    total = 0
    for n in p.get("nodes", []):
        if n["op"] == "attn" and n["impl"] == "sdpa":
            total += 2 * n["s"] ** 2 * n["d"]
        if n["op"] == "attn2d" and n["impl"] == "sdpa":
            total += 2 * n["hw"] ** 4 * n["c"]
    return total


@pytest.mark.parametrize("family", ["mlp", "plain_cnn", "random_dag", "random_token_dag", "canonical_fc",
                                    "canonical_resnet", "canonical_transformer"])
def test_macs_and_weights_estimates_match_the_built_module(family: str) -> None:
    entries = sorted(_first(family, 12), key=lambda e: e.macs)[:6]
    for e in entries:
        module, inputs = e.build()
        assert sum(p.numel() for p in module.parameters()) == e.params["weights"], e.key
        if family == "canonical_transformer":
            module.train()  # eval uses the fused fast path, which the flop counter cannot see (dropout is 0)
        expected = e.macs - _uncounted_sdpa(e)
        assert _counted_macs(module, inputs) == pytest.approx(expected, rel=1e-3), e.key


@pytest.mark.parametrize("family", SYNTHETIC)
def test_no_two_weight_tensors_of_a_model_are_copies(family: str) -> None:
    """Copied layers (nn.TransformerEncoder deep-copies its layer) are stored once by the ONNX exporter, and
    the runtime's memory is then that of a much smaller model than the graph says; constant-initialised
    tensors (norm scales, zero biases) repeat by design and are not counted."""
    import hashlib

    entry = sorted(_first(family, 6), key=lambda e: e.macs)[0]
    module, _ = entry.build()
    digests = [hashlib.sha256(p.detach().numpy().tobytes()).hexdigest() for p in module.parameters()
               if p.numel() > 1 and float(p.min()) != float(p.max())]
    assert len(digests) == len(set(digests)), entry.key


def test_grid_keys_carry_the_generator_revision() -> None:
    from inferperf.zoo import find_entry

    entry = _first("canonical_transformer", 1)[0]
    assert entry.key.endswith("-v2-b1")  # revision 2: a collection measures the new models, not "done"
    assert find_entry(entry.key).params == entry.params


# ------------------------------------------------------------------------------------------------ builds


@pytest.mark.parametrize("family", SYNTHETIC)
def test_every_synthetic_family_builds_and_runs(family: str) -> None:
    import torch

    for e in sorted(_first(family, 10), key=lambda e: e.macs)[:2]:
        entry = ZooEntry(e.key.replace("-b1", "-b2"), e.zoo, e.family, e.params, 2, e.seed)
        module, inputs = entry.build()
        assert not module.training
        assert all(t.shape[0] == 2 for t in inputs.values())
        with torch.no_grad():
            out = module(**inputs)
        assert out.shape[0] == 2 and torch.isfinite(out).all(), e.key


def _smallest_real(family: str) -> ZooEntry:
    """A small sample of a real family: not a full-size one, smallest input among the first few."""
    candidates = [e for e in _first(family, 12) if e.params["overrides"]] or _first(family, 1)
    return min(candidates, key=lambda e: (e.params.get("image_size") or e.params.get("seq_len"), e.key))


@pytest.mark.parametrize("family", zoo_families("real"))
def test_every_real_family_builds_and_runs(family: str) -> None:
    import torch

    e = _smallest_real(family)
    module, inputs = e.build()
    arch_inputs = {"pixel_values"} if e.params["modality"] == "vision" else {"input_ids", "attention_mask"}
    assert set(inputs) == arch_inputs
    with torch.no_grad():
        out = module(**inputs)
    first = out[0] if not isinstance(out, torch.Tensor) else out
    assert first.shape[0] == 1 and torch.isfinite(first).all(), e.key


def test_real_samplers_produce_valid_configs_with_their_own_family_label() -> None:
    from inferperf.ir.architectures import families, get_architecture
    from inferperf.zoo.real import EXCLUDED

    assert set(zoo_families("real")) | set(EXCLUDED) == set(families())
    for family in zoo_families("real"):
        sizes = set()
        for e in _first(family, 15):
            arch = get_architecture(e.params["arch"])
            assert arch.family == family
            config = arch.make_config(e.params["overrides"])  # raises on an unknown or inconsistent field
            shapes = arch.input_shapes(config, 1, e.params.get("seq_len"), e.params.get("image_size"))
            assert shapes
            sizes.add(e.params.get("image_size") or e.params.get("seq_len"))
            if "hidden_size" in e.params["overrides"] and "num_attention_heads" in e.params["overrides"]:
                o = e.params["overrides"]
                assert o["hidden_size"] % o["num_attention_heads"] == 0
        assert len(sizes) > 1, f"{family}: input size never varies"


# ------------------------------------------------------------------------------------------------ patterns


def test_random_dags_contain_the_advertised_patterns() -> None:
    blocks: collections.Counter[str] = collections.Counter()
    ops: set[str] = set()
    for e in _first("random_dag", 60):
        blocks.update(e.params["blocks"])
        nodes = e.params["nodes"]
        for n in nodes:
            if n["op"] == "conv" and n["groups"] > 1:
                ops.add("depthwise_conv" if n["groups"] == n["cin"] == n["cout"] else "grouped_conv")
            if n["op"] == "act":
                ops.add(n["fn"])
            ops.add(n["op"])
        consumers = collections.defaultdict(list)
        for n in nodes:
            for src in n["in"]:
                consumers[src].append(n["op"])
        for i, n in enumerate(nodes, start=1):
            if n["op"] == "conv" and "bn" in consumers[i]:
                ops.add("conv+bn")
            if n["op"] == "add" and "act" in consumers[i]:
                ops.add("add+act")
            if n["op"] == "act" and n["fn"] in ("sigmoid", "hardsigmoid") and "mul" in consumers[i]:
                ops.add("sigmoid_gating")
            if len(consumers[i]) > 1:
                ops.add("branch")
    for kind in ("basic_res", "bottleneck", "grouped", "inverted", "convnext", "inception", "se", "attention",
                 "merge"):
        assert blocks[kind] > 0, kind
    assert {"depthwise_conv", "grouped_conv", "concat", "add", "mul", "attn2d", "pool", "gap", "lnc", "bn",
            "conv+bn", "add+act", "sigmoid_gating", "branch", "relu", "gelu", "silu", "hardswish"} <= ops

    token_ops: set[str] = set()
    for e in _first("random_token_dag", 60):
        token_ops.update(e.params["blocks"])
        for n in e.params["nodes"]:
            token_ops.add(n["op"] if n["op"] != "attn" else f"attn_{n['impl']}{'_causal' if n['causal'] else ''}")
    assert {"attention", "mlp", "glu", "conv1d", "merge", "linear", "ln", "rms", "add", "concat",
            "attn_manual", "attn_sdpa", "attn_manual_causal"} <= token_ops


# ------------------------------------------------------------------------------------------------ export


def _check_against_onnxruntime(entry: ZooEntry, loaded) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    module, inputs = entry.build()
    assert {i.name: tuple(i.shape) for i in loaded.inputs} == {k: tuple(v.shape) for k, v in inputs.items()}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(loaded.path, opts, providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        want = module(**inputs).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_random_dag_and_canonical_lstm_export_to_onnx(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path))
    dag = next(e for e in _first("random_dag", 20) if "merge" in e.params["blocks"] and e.macs < 100e6)
    lstm = next(e for e in iter_zoo("canonical", families=["canonical_lstm"], batch_sizes=(2,))
                if e.params["layers"] == 2 and e.params["seq_len"] <= 32 and e.params["hidden"] <= 128)
    for entry, op in ((dag, "Conv"), (lstm, "LSTM")):
        loaded = entry.load()
        assert loaded.name == entry.key
        assert loaded.metadata["zoo_key"] == entry.key and loaded.metadata["family"] == entry.family
        assert str(tmp_path) in loaded.path
        assert op in {n.op_type for n in loaded.model.graph.node}
        _check_against_onnxruntime(entry, loaded)


@pytest.mark.slow
def test_real_family_entry_loads_through_the_architecture_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INFERPERF_HOME", str(tmp_path))
    params = {"arch": "bert-base", "modality": "text", "seq_len": 16,
              "overrides": {"hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1,
                            "intermediate_size": 128, "vocab_size": 1000}}
    entry = ZooEntry("bert/tiny-b2", "real", "bert", params, batch_size=2, seed=5)
    loaded = entry.load()
    assert {i.name: tuple(i.shape) for i in loaded.inputs} == {"input_ids": (2, 16), "attention_mask": (2, 16)}
    assert loaded.metadata["family"] == "bert" and loaded.metadata["overrides"] == params["overrides"]
    assert loaded.path.startswith(str(tmp_path / "cache" / "exports"))
    again = entry.load()  # served from the export cache: same file
    assert again.path == loaded.path
