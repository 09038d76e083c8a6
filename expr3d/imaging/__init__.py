"""Images as files and pixels, shared by data preparation, training, evaluation and deployment (numpy and OpenCV,
no TensorFlow).

Modules:
    photos   read photos (formats by header, EXIF orientation, bounded memory, the decompression-bomb guard), write
             them, list a folder of them; the one list of image extensions
    headers  image file headers and a JPEG's EXIF orientation, read without decoding
    faces    face detection and eye-line alignment (Haar cascades), face boxes from annotations, the deployment crop
    crops    the similarity crop matrix and the warps of an image or a depth map with it
    pixels   [-1, 1] floats <-> uint8 pixels (`to_uint8`, `from_uint8`)
    grid     tile grids with gutters and a header naming the columns (every sample grid, preview and contact sheet)
"""
