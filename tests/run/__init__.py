"""Tests of halbench/run/: the execution spine."""
