"""`meshconf demo`: confidence-painted meshes and a report for every person in images, folders or videos (the job
lives in `job.py`; the library it drives is `meshconf.engine.inference.MeshConfidence`)."""
