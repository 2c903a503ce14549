"""The View panel (what each frame shows, its resolutions, the last frame's time) and, while a
run trains, the Training panel (loss, PSNR, steps/s, progress, pause)."""

from __future__ import annotations

import math

from nerf.viewer.source import TrainingSource
from nerf.viewer.view_render import OUTPUTS


class RenderPanel:
    def __init__(self, viewer):
        self.viewer = viewer
        gui = viewer.server.gui
        s = viewer.frames.settings
        with gui.add_folder("View"):
            self.output = gui.add_dropdown("Output", OUTPUTS, initial_value=s.output)
            self.moving = gui.add_slider("Moving px", min=32, max=512, step=32, initial_value=s.moving_resolution,
                                         hint="longer side of the frames rendered while the camera moves")
            self.rest = gui.add_slider("Rest px", min=64, max=2048, step=64, initial_value=s.rest_resolution,
                                       hint="longer side of the finest frame once the camera rests")
            self.cameras = gui.add_checkbox("Training cameras", True, hint="frustums with photos; click one to fly there")
            self.status = gui.add_markdown("no frame yet")
        self.output.on_update(lambda _: viewer.frames.update_settings(output=self.output.value))
        self.moving.on_update(lambda _: viewer.frames.update_settings(moving_resolution=int(self.moving.value)))
        self.rest.on_update(lambda _: viewer.frames.update_settings(
            rest_resolution=max(int(self.rest.value), int(self.moving.value))))
        self.cameras.on_update(lambda _: self.show_cameras(bool(self.cameras.value)))
        self.training = TrainingPanel(viewer) if isinstance(viewer.source, TrainingSource) else None
        self._shown = ""

    def show_cameras(self, visible: bool) -> None:
        for handle in self.viewer.frustums:
            handle.visible = visible

    def update_status(self) -> None:
        frames = self.viewer.frames
        record = frames.last_record()
        text = "no frame yet"
        if record is not None:
            text = (f"last frame {record.width}x{record.height} px in {record.seconds:.2f} s "
                    f"({'moving' if record.moving else 'at rest'})")
        if frames.error:
            text += f"  \nrender failed: {frames.error}"
        if text != self._shown:
            self.status.content = text
            self._shown = text
        if self.training is not None:
            self.training.update()


class TrainingPanel:
    def __init__(self, viewer):
        self.source: TrainingSource = viewer.source
        gui = viewer.server.gui
        with gui.add_folder("Training"):
            self.stats = gui.add_markdown("waiting for the first step")
            self.progress = gui.add_progress_bar(0.0)
            self.pause = gui.add_button("Pause training", icon=None)
        self.pause.on_click(lambda _: self.toggle())
        self._shown = ""

    def toggle(self) -> None:
        paused = self.pause.label.startswith("Pause")
        self.source.pause(paused)
        self.pause.label = "Resume training" if paused else "Pause training"

    def update(self) -> None:
        s = self.source.snapshot_stats()
        state = "done" if s.done else ("paused" if s.paused else "training")
        psnr = f"{s.psnr:.2f} dB" if math.isfinite(s.psnr) else "-"
        text = (f"**{state}** step {s.step} / {s.steps}  \nloss {s.loss:.5f} · PSNR {psnr} (batch)  \n"
                f"{s.steps_per_second:.1f} steps/s · {s.rays} rays/step · {s.elapsed:.0f} s trained  \n"
                f"view shows step {self.source.step}")
        if text != self._shown:
            self.stats.content = text
            self.progress.value = 100.0 * s.step / max(s.steps, 1)
            self._shown = text
        if s.done and not self.pause.disabled:
            self.pause.disabled = True
