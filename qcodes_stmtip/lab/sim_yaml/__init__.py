"""pyvisa-sim definitions and station YAMLs of the simulated lab, shipped as package data."""
