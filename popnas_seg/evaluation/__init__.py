"""Evaluating one network (build, count, train, save, probe) as plain data in, plain data out."""
