"""The cluster lab: what users run on a real cluster without notebooks.

train_job.py is the training script (srun or torchrun; checkpoints, resumes, stops on
Slurm's signals); the sbatch scripts beside it launch it: srun.sbatch (one task per
rank), torchrun.sbatch (one torchrun per node), chain.sbatch (a chain of jobs that
outlives its time limit). The guide: course/library/cluster-lab.md.
"""
