"""downstream_eval_scripts/ pass the paper's settings: each script against the original's command line.

tests/fixtures/original_eval_commands.json holds the argv of the 24 evaluation scripts of the
original code (HSG-AIML/SSLTransformerRS). Each of our scripts runs here with PYTHON pointing to a
stub that records its argv (nothing is trained), and the effective values are compared.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "downstream_eval_scripts"
FIXTURE = json.loads((REPO / "tests/fixtures/original_eval_commands.json").read_text())
ORIGINAL = {path: argv for path, argv in FIXTURE.items() if not path.startswith("_")}

# What the scripts are compared on (the original's --checkpoint and --wandb_project are not).
COMPARED = ("learning_rate", "batch_size", "seed", "finetuning", "model", "target",
            "s1_input_channels", "s2_input_channels", "base_model", "image_px_size")
# Models with a ResNet of depth --base_model; the early-fusion ResNets are named by their depth;
# the Swin models have no ResNet (their --base_model is unused).
BASE_MODEL_USERS = ("DualBaseline", "DoubleResNetSimCLRDownstream")
RESNETS = ("resnet18", "resnet50")
SWIN_MODELS = ("SwinBaseline", "DualSwinBaseline", "DoubleSwinTransformerDownstream",
               "DoubleSwinTransformerSegmentation")
# Defaults of our train_evaluation.py that a script relies on when it leaves the flag out
# (the original's are the same; test_our_defaults_match checks ours).
OUR_DEFAULTS = {"batch_size": 100, "s1_input_channels": 2, "s2_input_channels": 13}
# Environment variables of common.sh that would change the captured argv.
COMMON_ENV = ("CHECKPOINT", "EPOCHS", "BATCH_SIZE", "NUM_WORKERS", "REPRODUCE_ORIGINAL", "OUTPUT_ROOT")


def counterpart(original_path):
    """Our script for an original one: the same folders, the name without _single/_multi."""
    return SCRIPTS / re.sub(r"_(single|multi)(?=_|\.sh$)", "", original_path)


def effective_base_model(model, base_model):
    if model in RESNETS:
        return model
    if model in BASE_MODEL_USERS:
        return base_model
    assert model in SWIN_MODELS, model
    return None


def original_settings(argv):
    """The effective values in the original's train_evaluation.py: its argparse defaults,
    string booleans read with strtobool, and abbreviations allowed (its scripts spell --base_mode)."""
    p = argparse.ArgumentParser()
    for name, typ, default in [("seed", int, 42), ("learning_rate", float, 1e-5), ("batch_size", int, 100),
                               ("s1_input_channels", int, 2), ("s2_input_channels", int, 13),
                               ("image_px_size", int, 224), ("model", str, "resnet18"),
                               ("base_model", str, "resnet18"), ("target", str, "dfc_label"),
                               ("finetuning", str, "False"), ("checkpoint", str, None),
                               ("wandb_project", str, None)]:
        p.add_argument(f"--{name}", type=typ, default=default)
    a = vars(p.parse_args(argv))
    finetuning = a["finetuning"].lower()
    assert finetuning in ("true", "false"), a["finetuning"]
    a["finetuning"] = finetuning == "true"
    a["base_model"] = effective_base_model(a["model"], a["base_model"])
    return {k: a[k] for k in COMPARED}


def our_parser():
    """The flags common.sh and the scripts may pass; the setting's own flags have no default,
    so a script must pass them (our train_evaluation.py defaults are not the paper's)."""
    p = argparse.ArgumentParser(allow_abbrev=False)
    for name in ("train_dir", "val_dir", "output_dir", "run_name", "checkpoint", "model", "target",
                 "base_model"):
        p.add_argument(f"--{name}")
    for name in ("seed", "image_px_size", "epochs", "num_workers", "batch_size",
                 "s1_input_channels", "s2_input_channels"):
        p.add_argument(f"--{name}", type=int, default=OUR_DEFAULTS.get(name))
    p.add_argument("--learning_rate", type=float)
    p.add_argument("--finetuning", action=argparse.BooleanOptionalAction)
    p.add_argument("--reproduce_original", action="store_true")
    return p


def our_settings(argv):
    a = vars(our_parser().parse_args(argv))
    for name in ("learning_rate", "seed", "finetuning", "model", "target", "image_px_size"):
        assert a[name] is not None, f"the script does not pass --{name}"
    if a["model"] in BASE_MODEL_USERS:
        assert a["base_model"] is not None, "the script does not pass --base_model"
    a["base_model"] = effective_base_model(a["model"], a["base_model"])
    return {k: a[k] for k in COMPARED}, a


@pytest.fixture
def run_script(tmp_path):
    """run_script(path, *args, **env) -> the argv our script gives train_evaluation.py."""
    stub = tmp_path / "python-stub"
    stub.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "json.dump(sys.argv[1:], open(os.environ['ARGV_OUT'], 'w'))\n")
    stub.chmod(0o755)
    (tmp_path / "dfc").mkdir()
    for name in ("swin_t.pth", "resnet50.pth"):
        (tmp_path / name).write_bytes(b"")
    base = {k: v for k, v in os.environ.items() if k not in COMMON_ENV}
    base.update(PYTHON=str(stub), DFC_ROOT=str(tmp_path / "dfc"), OUTPUT_ROOT=str(tmp_path / "runs"),
                SWIN_CHECKPOINT=str(tmp_path / "swin_t.pth"),
                RESNET50_CHECKPOINT=str(tmp_path / "resnet50.pth"))

    def run(script, *args, **env):
        out_file = tmp_path / "argv.json"
        out_file.unlink(missing_ok=True)
        out = subprocess.run(["bash", str(script), *args], cwd=tmp_path, capture_output=True, text=True,
                             env={**base, "ARGV_OUT": str(out_file), **env}, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        argv = json.loads(out_file.read_text())
        assert argv[0] == "train_evaluation.py"
        return argv[1:]

    run.tmp_path = tmp_path
    return run


def test_fixture_holds_the_24_original_scripts():
    assert "SSLTransformerRS" in FIXTURE["_source"]
    assert len(ORIGINAL) == 24
    for path, argv in ORIGINAL.items():
        assert re.fullmatch(r"classification/(single|multi)_label/(baselines|ssl)/\w+\.sh", path)
        assert all(a.startswith("--") and "=" in a for a in argv), path


def test_every_original_script_has_exactly_one_counterpart():
    ours = {counterpart(p) for p in ORIGINAL}
    assert len(ours) == len(ORIGINAL)
    assert all(s.is_file() for s in ours), sorted(str(s) for s in ours if not s.is_file())
    assert set((SCRIPTS / "classification").rglob("*.sh")) == ours


@pytest.mark.parametrize("original_path", sorted(ORIGINAL))
def test_script_passes_the_original_settings(original_path, run_script):
    script = counterpart(original_path)
    expected = original_settings(ORIGINAL[original_path])
    got, args = our_settings(run_script(script))
    assert got == expected, f"{script.relative_to(REPO)} vs the original's {original_path}"
    # Checkpoints: the pre-trained one for SSL runs; none for baselines (the original ignores its).
    if "/ssl/" in original_path:
        name = "swin_t.pth" if got["model"] in SWIN_MODELS else "resnet50.pth"
        assert args["checkpoint"] == str(run_script.tmp_path / name)
    else:
        assert args["checkpoint"] is None
    assert args["reproduce_original"] is False


@pytest.mark.parametrize("script", ["swin_t_baseline.sh", "swin_t_finetuned.sh", "swin_t_frozen.sh"])
def test_segmentation_scripts_use_the_swin_ssl_flags(script, run_script):
    path = SCRIPTS / "segmentation" / script
    assert "no segmentation scripts" in path.read_text()  # the project's addition, said so
    got, args = our_settings(run_script(path))
    assert (got["learning_rate"], got["batch_size"], got["seed"], got["image_px_size"]) == (3e-6, 32, 44, 224)
    assert (got["target"], got["model"]) == ("dfc", "DoubleSwinTransformerSegmentation")
    assert got["finetuning"] is (script != "swin_t_frozen.sh")
    assert (args["checkpoint"] is None) is (script == "swin_t_baseline.sh")


def test_reproduce_original_adds_the_flag(run_script):
    script = SCRIPTS / "classification/single_label/ssl/swin_t_frozen.sh"
    assert "--reproduce_original" in run_script(script, REPRODUCE_ORIGINAL="1")
    assert "--reproduce_original" not in run_script(script)
    assert "--reproduce_original" not in run_script(script, REPRODUCE_ORIGINAL="0")


def test_environment_overrides_then_extra_arguments_win(run_script):
    script = SCRIPTS / "classification/multi_label/ssl/resnet50_frozen.sh"   # passes --batch_size 32
    _, args = our_settings(run_script(script, BATCH_SIZE="8", EPOCHS="1"))
    assert (args["batch_size"], args["epochs"]) == (8, 1)
    _, args = our_settings(run_script(script, "--batch_size", "5", "--seed", "7", BATCH_SIZE="8"))
    assert (args["batch_size"], args["seed"]) == (5, 7)


def test_our_defaults_match():
    """The defaults the scripts rely on where the original's scripts leave a flag out."""
    import train_evaluation

    parser = train_evaluation.get_args_parser()
    assert {k: parser.get_default(k) for k in OUR_DEFAULTS} == OUR_DEFAULTS
