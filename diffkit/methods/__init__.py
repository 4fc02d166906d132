"""Methods: the training and sampling pipelines built from the library parts."""
