"""`meshconf qualitative`: predicted against ground-truth confidence for one dataset image (the job is `job.py`)."""
