"""Rollout collection, episode storage and the streamed datasets V and M train on."""
