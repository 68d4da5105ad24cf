import path from 'node:path';
import { joinInside } from '../util/paths.js';

/** Where the server keeps things under its data folder; names and ids never lead out of it. */
export function layout(dataDir: string) {
  return {
    dataDir,
    db: path.join(dataDir, 'cycle.db'),
    token: path.join(dataDir, 'token'),
    tarball: (sha: string) => joinInside(path.join(dataDir, 'blobs', 'tarballs'), `${sha}.tar.gz`),
    tree: (sha: string) => joinInside(path.join(dataDir, 'trees'), sha),
    taskOutputs: (jobId: string, taskId: string) => joinInside(path.join(dataDir, 'artifacts'), jobId, taskId),
    taskWork: (taskId: string) => joinInside(path.join(dataDir, 'work'), taskId),
    taskLog: (taskId: string) => joinInside(path.join(dataDir, 'logs'), `${taskId}.log`),
    /** An uploaded volume's files, content-addressed: one blob per sha256, shared by every volume. */
    volumeBlob: (sha: string) => joinInside(path.join(dataDir, 'blobs', 'volumes'), sha),
    /** An uploaded volume as a folder to mount: one tree per committed version (`version` is its manifest's sha256). */
    volumeTrees: (name: string) => joinInside(path.join(dataDir, 'volume-trees'), name),
    volumeTree: (name: string, version: string) => joinInside(path.join(dataDir, 'volume-trees'), name, version),
    /** A platform volume (`builtin/<name>`): the operator puts its files here. */
    builtinVolume: (name: string) => joinInside(path.join(dataDir, 'volumes', 'builtin'), name),
    uploadBlob: (sha: string) => joinInside(path.join(dataDir, 'blobs', 'uploads'), sha),
    tmp: path.join(dataDir, 'tmp'),
  };
}

export type Layout = ReturnType<typeof layout>;
