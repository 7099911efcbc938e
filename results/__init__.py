"""The results layer: the HDF5 file of a run (writer, reader, checkpoints) and the labelled
xarray view of it. Federates write through it; KPIs, reports and users read through it."""
