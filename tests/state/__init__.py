"""Tests of ladsdin.state: the codec, the store contract (memory and Redis) and frame models."""
