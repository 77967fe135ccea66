"""Rewards: pure reward math and the verl-facing reward manager."""
