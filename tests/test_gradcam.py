import numpy as np
import torch
from torch import nn

from ladd.report.gradcam import grad_cam


class GapNet(nn.Module):
    """conv → global average pool → linear: Grad-CAM equals CAM, ReLU(Σ_k w_ck A_k) up to scale."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_grad_cam_equals_class_activation_map_on_a_gap_network():
    torch.manual_seed(0)
    net, x = GapNet(), torch.randn(2, 1, 6, 6)
    maps, classes = grad_cam(net, x, torch.tensor([1, 2]))
    acts = net.conv(x).detach()
    direct = torch.relu(torch.einsum("bk,bkhw->bhw", net.fc.weight[classes].detach(), acts))
    direct = direct / direct.flatten(1).max(1).values[:, None, None]
    assert maps.shape == (2, 6, 6) and torch.allclose(maps, direct, atol=1e-5)
    assert classes.tolist() == [1, 2] and maps.min() >= 0 and torch.allclose(maps.flatten(1).max(1).values, torch.ones(2))
    predicted = grad_cam(net, x)[1]
    assert torch.equal(predicted, net(x).argmax(1))


def test_gradcam_command_trains_a_student_and_writes_its_figure(tmp_path):
    from typer.testing import CliRunner

    from ladd.cli import app

    runner = CliRunner()
    art = tmp_path / "art"
    assert runner.invoke(app, ["distill", "--dataset", "digits", "--ipc", "1", "--out", str(art)]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "gradcam",
            str(art),
            "--methods",
            "baseline",
            "--model",
            "convnet-w32",
            "--epochs",
            "1",
            "--test-images",
            "0,1",
            "--out",
            str(tmp_path / "cam"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cam" / "gradcam_baseline.png").stat().st_size > 0


def test_gradcam_figure_overlays_each_map_on_its_image(tmp_path, monkeypatch):
    from ladd.report import plots
    from ladd.report.gradcam import figure

    saved, real = [], plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: (saved.append(fig), real(fig, path))[1])
    torch.manual_seed(0)
    net, images = GapNet(), torch.randint(0, 256, (3, 1, 6, 6), dtype=torch.uint8)
    figure(net, images, torch.tensor([0, 1, 2]), (0.5,), (0.25,), ["a", "b", "c"], tmp_path / "cam.png", "t")
    grid = [ax for ax in saved[0].axes if ax.get_images()]
    top, bottom = grid[:3], grid[3:]
    assert [len(ax.get_images()) for ax in top] == [1, 1, 1] and [len(ax.get_images()) for ax in bottom] == [2, 2, 2]
    maps = grad_cam(net, (images.float() / 255 - 0.5) / 0.25)[0]
    for ax, cam in zip(bottom, maps):
        image, overlay = (im.get_array() for im in ax.get_images())
        assert image.shape == (6, 6) and overlay.shape == (6, 6, 4)  # the map drawn over the image, same pixels
        assert np.allclose(overlay[..., 3], 0.75 * cam.numpy(), atol=1e-6)  # opaque where the map is high only
    assert (tmp_path / "cam.png").stat().st_size > 0
