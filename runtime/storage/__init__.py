"""Images and root filesystems: import of docker-save tarballs and OCI layouts into a content-addressed
layer store, and a container's root built from the layers with overlayfs or by copying them."""
