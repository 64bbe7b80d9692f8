"""The pre-training monitor (training/monitor.py): metrics, BatchNorm re-estimation, the hook."""

import pytest
import torch

from training import monitor


def test_retrieval_of_identical_features_is_perfect_and_of_unrelated_ones_near_chance():
    z = torch.randn(50, 16)
    assert monitor.retrieval_accuracy(z, z.clone()) == {"top1": 1.0, "top5": 1.0}
    g = torch.Generator().manual_seed(0)
    r = monitor.retrieval_accuracy(torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g))
    assert r["top1"] < 0.03 and r["top5"] < 0.06
    same = torch.ones(4, 3)               # all keys equally similar: ties count against
    assert monitor.retrieval_accuracy(same, same)["top1"] == 0.0


@pytest.mark.parametrize("n_classes", [3, 12])
def test_knn_and_probe_separate_separable_classes(n_classes):
    """Any number of classes: a prepared dataset's class file may have more than the DFC's 8."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(n_classes, 16, generator=g) * 6
    y = torch.arange(20 * n_classes) % n_classes
    x = centres[y] + torch.randn(len(y), 16, generator=g)
    cut = 15 * n_classes
    assert (monitor.knn_predict(x[:cut], y[:cut], x[cut:], k=10) == y[cut:]).all()
    assert (monitor.linear_probe_predict(x[:cut], y[:cut], x[cut:]) == y[cut:]).all()


def test_batchnorm_reestimation_copies_and_leaves_the_model_alone():
    from models import create_model

    model = create_model("DoubleResNetSimCLR", base_model="resnet18")
    batches = [{"s1": torch.rand(4, 2, 32, 32) * 3 + 1, "s2": torch.rand(4, 13, 32, 32)}]
    net = monitor.reestimate_batchnorm(model, batches, torch.device("cpu"))
    assert float(model.backbone1.bn1.running_mean.abs().sum()) == 0.0      # untouched
    assert float(net.backbone1.bn1.running_mean.abs().sum()) > 0.0
    assert not net.training and net.backbone1.bn1.num_batches_tracked == 1


def test_tiny_pretraining_logs_the_monitor_at_step_0_and_every_n_epochs(sample_root, tmp_path):
    import train_resnet_backbone

    args = train_resnet_backbone.get_args_parser().parse_args(
        ["--train_dir", str(sample_root), "--arch", "resnet18", "--epochs", "2",
         "--batch_size", "8", "--image_px_size", "32", "--workers", "0", "--device", "cpu",
         "--output_dir", str(tmp_path), "--monitor_every", "2", "--monitor_dir", str(sample_root),
         "--lr_schedule", "none"])
    train_resnet_backbone.main(args)
    rows = monitor.read_monitor_log(tmp_path)
    assert [r["epoch"] for r in rows] == [0, 2]
    for r in rows:
        for key in monitor.KEYS:
            assert 0.0 <= r[key] <= 1.0, key
        assert 6 <= r["n_test"] <= 8        # test patches with a label (255: none)
        assert r["retrieval_chance_top1"] == pytest.approx(1 / 8)   # among all 8 test patches
    text = (tmp_path / "log.txt").read_text()
    assert "monitor epoch 0 (reference: before training)" in text and "monitor epoch 2" in text
    png = monitor.plot_monitor(rows, tmp_path / "monitor.png")
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("limit, reads_per_item", [(1 << 30, 1), (0, 3)])
def test_monitor_reads_its_crops_once_when_they_fit_the_cache(limit, reads_per_item):
    from data.synthetic import SyntheticSEN12MS
    from models import create_model

    class Counting(SyntheticSEN12MS):
        reads = 0

        def __getitem__(self, index):
            type(self).reads += 1
            return super().__getitem__(index)

    sets = {"train": Counting(12, "validation", size=32), "test": Counting(6, "test", size=32)}
    mon = monitor.Monitor(None, sets=sets, image_px_size=32, device="cpu", batch_size=4,
                          cache_limit_bytes=limit)
    model = create_model("DoubleResNetSimCLR", base_model="resnet18")
    first = mon.evaluate(model, reestimate_bn=True)     # BatchNorm pass + features: 2 passes
    again = mon.evaluate(model)
    assert Counting.reads == 12 * reads_per_item + 6 * min(reads_per_item, 2)
    assert first["n_test"] == again["n_test"] == 6
