"""Time series: built-in load profiles and the results files (HDF5) of runs."""
