"""The experiments behind docs/results.md, each a module run from the repository root as
`python -m experiments.NAME` (`--help` explains every flag). One command-line style (`_common.parser`):
what an experiment reads comes as `--run-dir`, `--run-dirs` or `--agent`, what it writes goes to `--out`,
and `--quiet` turns off progress bars.

average_cs         one C whose weights are the mean of several Cs' (a vote in one linear C)
cross_m            several Cs scored in the dreams of several Ms, beside their real scores
done_refit_row     issue 34's done-head refit applied to an already trained M, ready for `worldmodels run`
doom_hits          how many fireballs end a DoomTakeCover episode (the game's health, never seen by V or M)
drive_stats        how CarRacing agents drive (steer, gas, brake, on grass) real and dreamed; does V see grass
ensemble_last_round a finished run's last C trained in an ensemble M's dream (more Ms of its last round)
ensemble_table     does an ensemble M make the dream harder to cheat (one pass on random data)
evaluate_rounds    every round of iterative training on the same real episodes
fidelity           fixed policies in M's dream against the real env, and M's death recall
gas_cap            CarRacing agents scored with their gas capped (controller.max_gas), C unchanged
last_round         a finished run's last round again with other settings (or more rounds), as a row
m_memory           does M's memory hold over a whole long episode
mixed_collection   a round added to a finished run, its episodes collected by several Cs
policy_ensemble    several Cs of one M driving together (mean or median of their actions), z with more or less noise
real_route         the paper's route: C trained with CMA-ES in the real env (local or Ray)
rows_table         last_round's rows as one table, paired with the base, and the spread of their means
speed_probe        does M's memory hold the car's speed, and does M imagine a C as fast as it drives
temperature_sweep  the paper's temperature table on a finished run
worst_episodes     an agent's worst real episodes as GIFs, with what M predicted along them

Retired, with the commit that ran them named in docs/results.md: longer_m (d92a31f).
experiments/dropout_rows.sh (issue 34's dropout rows) is a shell script of `worldmodels` commands.
"""
