"""Parity with the original: its config, its command lines and its effective settings.

The expected values are the DESIGN tables of what the original's code actually did (read from
its code and checked by running it); the inputs are the original's own files, kept as
fixtures: ``original_backbone_config.json`` and ``original_eval_commands.json``.
"""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import train_d_swin_backbone
import train_evaluation
import train_resnet_backbone
from training import engine
from training.downstream import apply_plan, family, plan_training
from training.schedules import EpochSchedule, IterationSchedule
from training.swin_config import effective_settings, load_config

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The original's effective Swin pre-training settings (DESIGN.md)
ORIGINAL_SWIN = {"epochs": 300, "warmup_epochs": 20, "lr": 5e-4, "warmup_lr": 5e-7, "min_lr": 5e-6,
                 "weight_decay": 0, "temperature": 0.2, "drop_path_rate": 0.1, "batch_size": 50,
                 "seed": 42, "optimizer_eps": 1e-8, "optimizer_betas": (0.9, 0.999), "workers": 8,
                 "image_px_size": 224, "img_size": 224}


# ------------------------------------------------------------------ Swin pre-training config
def test_original_config_gives_the_original_effective_settings():
    settings = effective_settings(load_config(FIXTURES / "original_backbone_config.json"))
    assert {k: settings[k] for k in ORIGINAL_SWIN} == ORIGINAL_SWIN


def test_project_config_is_the_original_file_with_null_paths():
    ours = json.loads((REPO / "configs" / "backbone_config.json").read_text())
    original = json.loads((FIXTURES / "original_backbone_config.json").read_text())
    assert ours["train_dir"] is None and ours["val_dir"] is None
    for key in ("train_dir", "val_dir"):
        ours.pop(key), original.pop(key)
    assert ours == original


def test_swin_script_reads_the_original_file_and_flags_override_it(tmp_path):
    parser = train_d_swin_backbone.get_args_parser()
    args = parser.parse_args(["--config", str(FIXTURES / "original_backbone_config.json"),
                              "--train_dir", "X", "--epochs", "3", "--batch_size", "7"])
    _, settings = train_d_swin_backbone.resolve_settings(args)
    assert settings["epochs"] == 3 and settings["batch_size"] == 7 and args.epochs == 3
    assert settings["lr"] == 5e-4 and settings["weight_decay"] == 0      # the top-level TRAIN
    assert settings["drop_path_rate"] == 0.1 and settings["temperature"] == 0.2
    assert sorted(settings["_overridden"]) == ["batch_size", "epochs", "train_dir"]
    # the project's own config gives the same run
    args2 = parser.parse_args(["--train_dir", "X", "--epochs", "3", "--batch_size", "7"])
    _, ours = train_d_swin_backbone.resolve_settings(args2)
    assert {k: ours[k] for k in ORIGINAL_SWIN} == {k: settings[k] for k in ORIGINAL_SWIN}


def _opt(lr=5e-4):
    return torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=lr)


def test_swin_schedule_is_timms_cosine_stepped_per_iteration():
    from timm.scheduler.cosine_lr import CosineLRScheduler

    steps, epochs, warm = 7, 12, 2
    opt = _opt()
    sched = IterationSchedule(opt, epochs=epochs, warmup_epochs=warm, steps_per_epoch=steps,
                              warmup_lr=5e-7, min_lr=5e-6)
    ref_opt = _opt()
    ref = CosineLRScheduler(ref_opt, t_initial=epochs * steps, lr_min=5e-6, warmup_lr_init=5e-7,
                            warmup_t=warm * steps, cycle_limit=1, t_in_epochs=False)
    lrs = [opt.param_groups[0]["lr"]]
    for i in range(epochs * steps):
        sched.step()
        ref.step_update(i + 1)
        lrs.append(opt.param_groups[0]["lr"])
        assert lrs[-1] == ref_opt.param_groups[0]["lr"]
    w = warm * steps
    assert lrs[0] == pytest.approx(5e-7)
    assert all(a < b for a, b in zip(lrs[:w], lrs[1:w]))        # linear warm-up ...
    assert lrs[w - 1] == pytest.approx(5e-7 + (w - 1) * (5e-4 - 5e-7) / w)
    assert all(a >= b for a, b in zip(lrs[w:], lrs[w + 1:]))     # ... then cosine (timm: the
    assert 0.9 * 5e-4 < max(lrs) < 5e-4                          # cosine counts from step 0)
    assert lrs[-1] == pytest.approx(5e-6, rel=0.05)              # cosine down to MIN_LR
    # resume: a fresh schedule loaded from the state continues identically
    opt2 = _opt()
    s2 = IterationSchedule(opt2, epochs=epochs, warmup_epochs=warm, steps_per_epoch=steps,
                           warmup_lr=5e-7, min_lr=5e-6)
    s2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_reproduce_original_keeps_the_swin_lr_at_warmup_lr():
    opt = _opt()
    sched = IterationSchedule(opt, epochs=300, warmup_epochs=20, steps_per_epoch=5,
                              warmup_lr=5e-7, min_lr=5e-6, constant=True)
    for _ in range(400):
        sched.step()
        assert opt.param_groups[0]["lr"] == 5e-7
    args = train_d_swin_backbone.get_args_parser().parse_args(["--reproduce_original"])
    assert args.reproduce_original is True


# ------------------------------------------------------------------ ResNet pre-training
def test_resnet_pretraining_defaults_are_the_originals():
    args = train_resnet_backbone.get_args_parser().parse_args([])
    assert (args.epochs, args.lr, args.weight_decay, args.temperature, args.batch_size,
            args.image_px_size, args.lr_schedule, args.lr_schedule_start) == \
        (201, 3e-5, 1e-4, 0.07, 200, 128, "cosine", 10)


def test_resnet_schedule_steps_per_epoch_after_epoch_10():
    steps_per_epoch = 40
    opt = _opt(3e-5)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch)
    sched = EpochSchedule(cosine, first_epoch=10)
    lrs = []
    for _ in range(201):
        lrs.append(opt.param_groups[0]["lr"])   # the LR this epoch trains with
        opt.step()
        sched.step()
    assert all(lr == 3e-5 for lr in lrs[:11])          # epochs 0..10 at the base LR
    k = 5                                              # epoch 15: 5 scheduler steps
    assert lrs[10 + k] == pytest.approx(3e-5 * (1 + math.cos(math.pi * k / steps_per_epoch)) / 2)
    assert lrs[10 + steps_per_epoch] == pytest.approx(0.0, abs=1e-12)  # the cosine's minimum


# ------------------------------------------------------------------ train_evaluation.py
def test_downstream_defaults_are_the_originals():
    a = train_evaluation.get_args_parser().parse_args([])
    assert (a.model, a.base_model, a.epochs, a.learning_rate, a.classifier_lr, a.batch_size,
            tuple(a.adam_betas), a.weight_decay, a.lr_step_epochs, a.lr_step_gamma,
            a.train_mode, a.val_mode, a.balanced_classes_train, a.balanced_classes_val,
            a.val_every, a.seed, a.finetuning, a.drop_path_rate, a.image_px_size) == \
        ("resnet18", "resnet18", 201, 1e-5, 3e-6, 100, (0.9, 0.999), 1e-3, [100], 0.1,
         "validation", "test", True, False, 2, 42, False, 0.1, 224)


@pytest.mark.parametrize("spelling,expected", [
    (["--finetuning=True"], True), (["--finetuning=False"], False), (["--finetuning", "True"], True),
    (["--finetuning"], True), (["--no-finetuning"], False), ([], False), (["--finetuning=false"], False),
])
def test_boolean_flags_accept_the_original_strings(spelling, expected):
    assert train_evaluation.get_args_parser().parse_args(spelling).finetuning is expected


def test_bad_boolean_string_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        train_evaluation.get_args_parser().parse_args(["--finetuning=maybe"])
    assert "--finetuning" in capsys.readouterr().err


def _original_commands() -> dict:
    data = json.loads((FIXTURES / "original_eval_commands.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _expected_groups(model: str, finetuning: bool, lr: float, clr: float) -> dict:
    """DESIGN.md: which parameters train, at which LR (group name -> LR)."""
    if model in ("resnet18", "resnet50", "DualBaseline", "SwinBaseline", "DualSwinBaseline"):
        return {"all": lr}
    if finetuning:
        return {"backbone": lr, "head": clr}
    return {"head": lr}


@pytest.mark.slow
def test_the_24_original_command_lines_parse_and_give_the_papers_settings(capsys):
    commands = _original_commands()
    assert len(commands) == 24
    parser = train_evaluation.get_args_parser()
    built = {}
    for path, argv in commands.items():
        args = parser.parse_args(argv)
        raw = dict(tok[2:].split("=", 1) for tok in argv if tok.startswith("--") and "=" in tok)
        assert args.learning_rate == float(raw["learning_rate"]), path
        assert args.batch_size == int(raw.get("batch_size", 100)), path
        assert args.seed == int(raw["seed"]), path
        assert args.finetuning is (raw["finetuning"] == "True"), path
        assert args.model == raw["model"] and args.target == raw["target"], path
        assert args.image_px_size == 224 and args.classifier_lr == 3e-6 and args.epochs == 201
        assert ("wandb_project" in raw) == ("--wandb_project" in args.ignored_flags), path
        if "ssl" in path:
            assert family(args.model) == "ssl"
            assert args.learning_rate == 3e-6 and args.batch_size == 32 and args.seed == 44
            assert args.finetuning is ("finetuned" in path)
        else:
            assert family(args.model) == "baseline" and args.finetuning is True
            assert args.learning_rate == (3e-7 if "swin" in path else 3e-6)
        # the optimiser's groups: build each distinct model once (small heads, real backbones)
        key = (args.model, args.base_model, args.s1_input_channels, args.s2_input_channels,
               args.finetuning)
        if key not in built:
            from models import create_model

            model = create_model(args.model, num_classes=8, base_model=args.base_model,
                                 s1_input_channels=args.s1_input_channels,
                                 s2_input_channels=args.s2_input_channels)
            plan = plan_training(args.model, finetuning=args.finetuning,
                                 learning_rate=args.learning_rate, classifier_lr=args.classifier_lr)
            groups = apply_plan(model, plan)
            built[key] = ({g["name"]: g["lr"] for g in groups},
                          sum(p.numel() for g in groups for p in g["params"]),
                          sum(p.numel() for p in model.parameters()),
                          sum(p.numel() for p in model.fc.parameters()))
        names, trained, total, head = built[key]
        assert names == _expected_groups(args.model, args.finetuning, args.learning_rate,
                                         args.classifier_lr), path
        assert trained == (head if names == {"head": args.learning_rate} else total), path


def test_segmentation_groups_ours_and_the_originals():
    from models import create_model

    model = create_model("DoubleSwinTransformerSegmentation", img_size=224)
    total = sum(p.numel() for p in model.parameters())
    encoders = sum(p.numel() for n, p in model.named_parameters() if n.startswith("backbone"))
    cases = {  # (finetuning, reproduce_original) -> (groups, trained parameters)
        (False, False): ({"head": 1e-5}, total - encoders),
        (True, False): ({"backbone": 1e-5, "head": 3e-6}, total),
        (False, True): ({"all": 1e-5}, total),      # the original: "frozen" trains everything
        (True, True): ({"all": 3e-6}, total),       # ... fine-tuning too, at the classifier LR
    }
    for (ft, orig), (groups, trained) in cases.items():
        plan = plan_training("DoubleSwinTransformerSegmentation", finetuning=ft, learning_rate=1e-5,
                             classifier_lr=3e-6, reproduce_original=orig)
        got = apply_plan(model, plan)
        assert {g["name"]: g["lr"] for g in got} == groups, (ft, orig)
        assert sum(p.numel() for g in got for p in g["params"]) == trained, (ft, orig)


def test_frozen_backbone_eval_mode_and_the_originals_train_mode():
    from models import create_model

    model = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18")
    plan = plan_training("DoubleResNetSimCLRDownstream", finetuning=False, learning_rate=1e-5,
                         classifier_lr=3e-6)
    apply_plan(model, plan)
    model.train()
    assert not model.backbone1.training and model.fc.training           # ours: fixed BN stats
    apply_plan(model, plan, frozen_in_train_mode=True)
    model.train()
    assert model.backbone1.training                                     # the original
    assert not any(p.requires_grad for p in model.backbone1.parameters())


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3)

    def forward(self, batch):
        return self.fc(batch["s2"])


class _ToyTask:
    kind = "single_label"

    def __init__(self):
        self.seen = 0

    def __call__(self, outputs, batch):
        self.seen += len(batch["s2"])
        return nn.functional.cross_entropy(outputs, batch["dfc_label"]), {}

    def new_accumulator(self):
        return None


def _toy_batches(nan_in=()):
    out = []
    for i in range(4):
        out.append({"s2": torch.randn(2, 2), "dfc_label": torch.tensor([0, 1]),
                    "s1_nan_pixels": torch.tensor([3 if i in nan_in else 0, 0])})
    return torch.utils.data.DataLoader(out, batch_size=None)


def test_reproduce_original_skips_batches_with_nan_and_ours_repairs_them():
    model, task = _Toy(), _ToyTask()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = engine.train_one_epoch(model, _toy_batches(nan_in={1, 3}), task, opt, torch.device("cpu"), 0,
                                    options=engine.FitOptions(epochs=1, skip_nan_batches=True))
    assert task.seen == 4 and result.stats["skipped_nan_batches"] == 2
    task = _ToyTask()
    engine.train_one_epoch(model, _toy_batches(nan_in={1, 3}), task, opt, torch.device("cpu"), 0)
    assert task.seen == 8


def test_validation_after_epoch_indices_0_2_4_and_the_last(tmp_path):
    model, task = _Toy(), _ToyTask()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history = engine.fit(model, _toy_batches(), task, opt, torch.device("cpu"),
                         engine.FitOptions(epochs=6, output_dir=tmp_path, val_every=2, save_every=100),
                         val_loader=_toy_batches(), callbacks=engine.Callbacks(make_checkpoint=lambda e, v: {"epoch": e}))
    assert [r["epoch"] - 1 for r in history if "val" in r] == [0, 2, 4, 5]


def test_random_evaluation_crops_only_when_reproducing(sample_root):
    from data import DFCDataset

    ours = DFCDataset(sample_root, mode="test", image_px_size=224)
    assert {ours.window(0).col_off, ours.window(0).row_off} == {16}        # centre crop
    orig = DFCDataset(sample_root, mode="test", image_px_size=224, random_crop=True)
    offsets = {(orig.window(0).col_off, orig.window(0).row_off) for _ in range(40)}
    assert len(offsets) > 1 and all(0 <= v <= 31 for o in offsets for v in o)  # randint(0, 32)


# ------------------------------------------------------------------ distributed evaluation
def _eval_worker(rank, world, init_file, n, out):
    import torch.distributed as dist

    from training.metrics import MetricAccumulator

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        class Task:
            kind = "single_label"

            def __call__(self, outputs, batch):
                return outputs.sum() * 0, {}

            def new_accumulator(self):
                return MetricAccumulator("single_label", 8)

            def targets(self, batch):
                return batch["y"]

        class Data(torch.utils.data.Dataset):
            def __len__(self):
                return n

            def __getitem__(self, i):
                return {"s2": torch.tensor([float(i)]), "y": torch.tensor(i % 8)}

        class Model(nn.Module):
            def forward(self, batch):   # predicts the class perfectly
                return nn.functional.one_hot(batch["y"], 8).float()

        loader = engine.build_loader(Data(), batch_size=2, shuffle=False, evaluation=True)
        scores = engine.evaluate(Model(), loader, Task(), torch.device("cpu"))
        if rank == 0:
            torch.save(scores["confusion_matrix"], out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_evaluation_counts_every_sample_once(tmp_path):
    import torch.multiprocessing as mp

    n, world = 7, 2
    out = tmp_path / "cm.pt"
    mp.spawn(_eval_worker, args=(world, str(tmp_path / "init"), n, str(out)), nprocs=world)
    cm = torch.tensor(torch.load(out))
    assert int(cm.sum()) == n                        # DistributedSampler would give 8
    assert cm.diag().tolist() == [1] * 7 + [0]


def test_shard_sampler_partitions_without_padding():
    shards = [list(engine.ShardSampler(range(11), num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
