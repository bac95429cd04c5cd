"""Submissions of a1_slurm_job: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form). The grader runs them
on the test Slurm (tests/exercises/conftest.py starts it)."""

SUBMISSIONS = {
    # the batch script runs once: without srun only task 0 prints
    "no_srun": ([("srun python -m a1_hello", "python -m a1_hello")], "test_job"),
    # one task with two CPUs is not two tasks
    "one_task_two_cpus": ([("#SBATCH --ntasks=2", "#SBATCH --ntasks=1 --cpus-per-task=2")],
                          "test_options"),
    # "5m" is no Slurm time (minutes are a plain number): sbatch refuses the script
    "time_in_minutes_suffix": ([("--time=00:05:00", "--time=5m")], "test_options"),
    # short options, several on one line, minutes as a plain number
    "equivalent": ([(("#SBATCH --job-name=hpclab-a1\n#SBATCH --ntasks=2\n"
                      "#SBATCH --time=00:05:00\n#SBATCH --output=a1-%j.out\n"),
                     "#SBATCH -J hpclab-a1 -n 2\n#SBATCH -t 5 -o a1-%j.out\n"),
                    ("srun python -m a1_hello", "srun --ntasks=2 python -m a1_hello")], None),
}
