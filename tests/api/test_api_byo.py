"""Bring your own model and data from Python: nn.Modules and a torch Dataset, no plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ekdcli as ekd
from ekdcli.sdk import UsageError


class Tiny(torch.nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class Images(torch.utils.data.Dataset):
    """Floats in [0, 1], as torchvision's ToTensor gives; class k is brighter in channel k % 3."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 4
        self.images = torch.rand(n, 3, 8, 8, generator=gen) * 0.5
        for i, k in enumerate(self.labels.tolist()):
            self.images[i, k % 3] += 0.1 * (k + 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


@pytest.mark.slow
def test_distill_a_python_student_from_a_python_teacher_on_a_python_dataset(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher, student = Tiny(), Tiny()
    start = {k: v.clone() for k, v in student.state_dict().items()}
    loader = torch.utils.data.DataLoader(Images(64, 0), batch_size=16, shuffle=True)
    run = ekd.distill(
        teacher, student, train=loader, test=Images(32, 1), method="energy_kd", epochs=2, batch_size=16
    )
    assert (
        run.method == "energy_kd"
        and run.data.startswith("python-")
        and run.student.startswith("python-student")
    )
    assert 0.0 <= run.best_top1 <= 1.0 and len(run.metrics) == 2
    counts = run.objective["distiller"]["train_counts"]
    assert sum(counts.values()) == 64  # the 64 training images, partitioned by the teacher's energies
    learned = load_file(str(run.weights))
    student.load_state_dict(learned)  # the weights fit the user's own module
    assert any(not torch.equal(learned[k], start[k]) for k in start)  # it trained


def test_typos_and_bad_modules_are_one_sentence_before_any_work() -> None:
    with pytest.raises(UsageError) as caught:
        ekd.distill(Tiny(), Tiny(), train=Images(8, 0), epoch=2)
    assert caught.value.message.startswith("keyword arguments: unknown key 'epoch' (did you mean 'epochs'?)")
    with pytest.raises(UsageError, match=r"logits of shape \(2, 5\) .* the data have 4 classes"):
        ekd.distill(Tiny(), Tiny(classes=5), train=Images(8, 0))
    with pytest.raises(UsageError, match="needs its data: pass train=Dataset"):
        ekd.distill(Tiny(), Tiny())
    assert not Path("ekd-store").exists() and not Path("store").exists()


@pytest.mark.slow
def test_the_docs_byo_section_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    doc = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"
    text = (
        doc.read_text(encoding="utf-8").split("## Bring your own model and data", 1)[1].split("\n## ", 1)[0]
    )
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    exec(compile("import ekdcli as ekd\n" + block, "byo section", "exec"), {"__name__": "byo"})
    data, student, top1 = capsys.readouterr().out.split()
    assert data.startswith("python-") and student.startswith("python-student-net-") and 0 <= float(top1) <= 1
