"""`worldmodels/CarRacing-v3`: gymnasium's CarRacing-v3 with the same observations, rewards and ends, array
for array, several times faster.

Nearly all of a gymnasium CarRacing step is drawing (97 % in a cProfile of 400 steps; 128-175 steps/s a
core here): every frame it rotates and scales
about 770 road and grass polygons one vertex at a time in Python, tests each against the screen, builds a
font and renders the score text. This subclass changes only how the frame is drawn, never what:

- every polygon of a frame is transformed at once with numpy, in the exact float operations pygame's
  `Vector2.rotate_rad` performs (the angle reduced with fmod to [0, 2 pi), the same special case for
  quarter turns, sin and cos from the C library through `math`, then cos x - sin y and sin x + cos y, no
  fused multiply-add), so every vertex is the same double;
- the same visibility test picks the same polygons, which are then drawn by the same pygame.gfxdraw calls
  with the same coordinates, colours and order;
- the font is built once, and the score text rendered again only when it changes;
- the physics, track generation, rewards and ends are gymnasium's own code (this is a subclass).

Proven against gymnasium 1.4.0 with pygame-ce 2.5.8 (tests/test_fast_carracing.py compares whole episodes
array for array); with other versions it warns once, since their drawing code may differ.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from typing import Any

import numpy as np
import pygame
from gymnasium.envs.box2d import car_dynamics as cd
from gymnasium.envs.box2d import car_racing as cr
from gymnasium.envs.box2d.car_racing import CarRacing
from pygame import gfxdraw

PROVEN = {"gymnasium": "1.4.0", "pygame-ce": "2.5.8"}
"""The versions whose drawing this module was proven to reproduce exactly."""

TWO_PI = 2.0 * math.pi
HALF_PI = math.pi / 2.0
EPSILON = 1e-6  # pygame's Vector2 default epsilon, used by its quarter-turn special case


@cache
def check_versions() -> None:
    """Warn once when the installed gymnasium or pygame-ce is not the one this env was proven against."""
    from worldmodels.versions import package_versions

    have = package_versions()
    other = {k: have.get(k) for k, v in PROVEN.items() if have.get(k) != v}
    if other:
        warnings.warn(
            f"worldmodels/CarRacing-v3 was proven identical to CarRacing-v3 with {PROVEN}; this is "
            f"{other}: tests/test_fast_carracing.py says whether it still is",
            stacklevel=3,
        )


def rotate_xy(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate points (x, y arrays of any shape) by `angle` radians exactly as pygame's Vector2.rotate_rad:
    the angle reduced with fmod to [0, 2 pi), quarter turns special-cased, then cos x - sin y and
    sin x + cos y in doubles, each product rounded on its own (no fused multiply-add)."""
    a = math.fmod(angle, TWO_PI)
    if a < 0:
        a += TWO_PI
    if math.fmod(a + EPSILON, HALF_PI) < 2 * EPSILON:
        quad = int((a + EPSILON) / HALF_PI)
        return {0: (x, y), 4: (x, y), 1: (-y, x), 2: (-x, -y), 3: (y, -x)}[quad]
    s, c = math.sin(a), math.cos(a)
    return c * x - s * y, s * x + c * y


def _grass() -> np.ndarray:
    """The grass patches, in gymnasium's order and float values: (400, 4, 2)."""
    g = cr.GRASS_DIM
    polys = [
        [
            (g * x + g, g * y + 0),
            (g * x + 0, g * y + 0),
            (g * x + 0, g * y + g),
            (g * x + g, g * y + g),
        ]
        for x in range(-20, 20, 2)
        for y in range(-20, 20, 2)
    ]
    return np.array(polys, np.float64)


GRASS = _grass()
MARGIN = 4.0
"""Pixels of room kept around the screen by the drawing shortcuts (gfxdraw reaches one pixel past a vertex)."""


PANEL = cr.WINDOW_H / 40.0 * 5
"""Rows of the surface that the indicator panel (a black bar, drawn after the flip) covers."""


def covers_screen(x: list[float], y: list[float]) -> bool:
    """Whether a convex quadrilateral (its 4 vertices, either winding) holds the whole screen with MARGIN
    pixels to spare on every side."""
    lo, hx, hy = -MARGIN, cr.WINDOW_W + MARGIN, cr.WINDOW_H + MARGIN
    signs = set()
    for k in range(4):
        x0, y0, x1, y1 = x[k], y[k], x[(k + 1) % 4], y[(k + 1) % 4]
        for cx, cy in ((lo, lo), (hx, lo), (hx, hy), (lo, hy)):
            signs.add((x1 - x0) * (cy - y0) - (y1 - y0) * (cx - x0) > 0)
    return len(signs) == 1


class FastCarRacing(CarRacing):
    """CarRacing-v3 drawn faster, with identical observations (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_versions()
        super().__init__(*args, **kwargs)
        self._road_for: list | None = None
        self._canvas: Any = None
        self._font: Any = None
        self._text: tuple[str, Any] | None = None

    def _polygons(self) -> tuple[np.ndarray, np.ndarray, list]:
        """Every polygon gymnasium draws, in its order: the field, the grass patches, then the track's
        tiles and kerbs (rebuilt when reset makes a new track), as vertex coordinates x, y (4, M); and the
        road's colours, read when drawn (a visited tile changes colour in place)."""
        if self._road_for is not self.road_poly:
            b = cr.PLAYFIELD
            field = np.array([[(b, b), (b, -b), (-b, -b), (-b, b)]], np.float64)
            road = np.array([poly for poly, _ in self.road_poly], np.float64).reshape(-1, 4, 2)
            every = np.concatenate([field, GRASS, road])  # (M, 4, 2)
            self._xy = np.ascontiguousarray(every[..., 0].T), np.ascontiguousarray(every[..., 1].T)
            self._road_colors = [color for _, color in self.road_poly]
            self._road_for = self.road_poly
        return self._xy[0], self._xy[1], self._road_colors

    def _render_road(self, zoom: float, translation: Any, angle: float) -> None:
        px, py, colors = self._polygons()
        rx, ry = rotate_xy(px, py, angle)
        x = rx * zoom + translation[0]  # (4, M): vertex k of every polygon in row k
        y = ry * zoom + translation[1]
        m = cr.MAX_SHAPE_DIM
        # gymnasium's test: a vertex within MAX_SHAPE_DIM of the screen
        inside = (-m <= x) & (x <= cr.WINDOW_W + m) & (-m <= y) & (y <= cr.WINDOW_H + m)
        near = inside[0] | inside[1] | inside[2] | inside[3]
        # and then only polygons that can change a pixel that is kept: gfxdraw truncates coordinates and
        # clips to the surface, its antialiased edge reaches one pixel past them, and rows [0, PANEL) of
        # this (not yet flipped) surface end up under the indicator panel, which is drawn over them
        lo_x, hi_x = np.minimum(np.minimum(x[0], x[1]), np.minimum(x[2], x[3])), np.maximum(
            np.maximum(x[0], x[1]), np.maximum(x[2], x[3]))  # fmt: skip
        lo_y, hi_y = np.minimum(np.minimum(y[0], y[1]), np.minimum(y[2], y[3])), np.maximum(
            np.maximum(y[0], y[1]), np.maximum(y[2], y[3]))  # fmt: skip
        visible = (
            near
            & (hi_x >= -MARGIN)
            & (lo_x <= cr.WINDOW_W + MARGIN)
            & (hi_y >= PANEL - MARGIN)
            & (lo_y <= cr.WINDOW_H + MARGIN)
        )
        xs, ys = x.T, y.T

        def draw(i: int, color: Any) -> None:
            pts = list(zip(xs[i].tolist(), ys[i].tolist(), strict=True))
            gfxdraw.aapolygon(self.surf, pts, color)
            gfxdraw.filled_polygon(self.surf, pts, color)

        # gymnasium draws the whole field unclipped; when the field holds the screen with room to spare,
        # filling the surface sets every pixel to the same colour at a fraction of the cost
        if covers_screen(xs[0].tolist(), ys[0].tolist()):
            self.surf.fill(self.bg_color)
        else:
            self.surf.fill((0, 0, 0))
            draw(0, self.bg_color)
        n_grass = len(GRASS)
        for i in np.flatnonzero(visible[1 : 1 + n_grass]) + 1:
            draw(i, self.grass_color)
        for i in np.flatnonzero(visible[1 + n_grass :]):
            draw(1 + n_grass + i, [int(c) for c in colors[i]])

    def _draw_car(self, zoom: float, translation: Any, angle: float) -> None:
        """gymnasium's Car.draw without particles (as for observations): the same polygons from Box2D's
        transforms, the same wheel stripes, rotated and scaled in one numpy pass, drawn in the same order."""
        polys: list[list[tuple[float, float]]] = []
        colors: list[Any] = []
        w, r, size = cd.WHEEL_W, cd.WHEEL_R, cd.SIZE
        for obj in self.car.drawlist:
            for f in obj.fixtures:
                t = f.body.transform
                polys.append([(c[0], c[1]) for c in (t * v for v in f.shape.vertices)])
                colors.append([int(c * 255) for c in obj.color])
                if "phase" not in obj.__dict__:
                    continue
                a1, a2 = obj.phase, obj.phase + 1.2
                s1, s2, c1, c2 = math.sin(a1), math.sin(a2), math.cos(a1), math.cos(a2)
                if s1 > 0 and s2 > 0:
                    continue
                if s1 > 0:
                    c1 = np.sign(c1)
                if s2 > 0:
                    c2 = np.sign(c2)
                white = [(-w * size, +r * c1 * size), (+w * size, +r * c1 * size),
                         (+w * size, +r * c2 * size), (-w * size, +r * c2 * size)]  # fmt: skip
                polys.append([(c[0], c[1]) for c in (t * v for v in white)])
                colors.append(cd.WHEEL_WHITE)
        flat = np.array([p for poly in polys for p in poly], np.float64)
        rx, ry = rotate_xy(flat[:, 0], flat[:, 1], angle)
        xs = (rx * zoom + translation[0]).tolist()
        ys = (ry * zoom + translation[1]).tolist()
        i = 0
        for poly, color in zip(polys, colors, strict=True):
            n = len(poly)
            pygame.draw.polygon(
                self.surf, color=color, points=list(zip(xs[i : i + n], ys[i : i + n]))
            )
            i += n

    def _render(self, mode: str) -> Any:
        assert mode in self.metadata["render_modes"]
        pygame.font.init()
        if self.screen is None and mode == "human":
            pygame.display.init()
            self.screen = pygame.display.set_mode((cr.WINDOW_W, cr.WINDOW_H))
        if self.clock is None:
            self.clock = pygame.time.Clock()
        if "t" not in self.__dict__:
            return None  # reset() not called yet

        if self._canvas is None:  # one surface, reused: _render_road sets every pixel of it first
            self._canvas = pygame.Surface((cr.WINDOW_W, cr.WINDOW_H))
        self.surf = self._canvas
        assert self.car is not None
        angle = -self.car.hull.angle
        zoom = 0.1 * cr.SCALE * max(1 - self.t, 0) + cr.ZOOM * cr.SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (cr.WINDOW_W / 2 + trans[0], cr.WINDOW_H / 4 + trans[1])

        self._render_road(zoom, trans, angle)
        if mode in ("state_pixels_list", "state_pixels"):
            self._draw_car(zoom, trans, angle)
        else:  # gymnasium's, which also draws the skid particles
            self.car.draw(self.surf, zoom, trans, angle, True)
        self.surf = pygame.transform.flip(self.surf, False, True)
        self._render_indicators(cr.WINDOW_W, cr.WINDOW_H)

        label = f"{self.reward:04.0f}"
        if self._text is None or self._text[0] != label:
            if self._font is None:
                self._font = pygame.font.Font(pygame.font.get_default_font(), 42)
            self._text = (label, self._font.render(label, True, (255, 255, 255), (0, 0, 0)))
        text = self._text[1]
        text_rect = text.get_rect()
        text_rect.center = (60, cr.WINDOW_H - cr.WINDOW_H * 2.5 / 40.0)
        self.surf.blit(text, text_rect)

        if mode == "human":
            pygame.event.pump()
            self.clock.tick(self.metadata["render_fps"])
            assert self.screen is not None
            self.screen.fill(0)
            self.screen.blit(self.surf, (0, 0))
            pygame.display.flip()
            return None
        if mode == "rgb_array":
            return self._create_image_array(self.surf, (cr.VIDEO_W, cr.VIDEO_H))
        if mode == "state_pixels":
            return self._create_image_array(self.surf, (cr.STATE_W, cr.STATE_H))
        return self.isopen
