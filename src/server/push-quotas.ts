import type { DB } from './db.js';
import { DomainError } from './errors.js';
import { ExtractOverLimit, type ExtractLimits } from './extract.js';

/** An extraction's refusal (a limit, a quota) as the domain's error. */
export function refusedPush(error: ExtractOverLimit): DomainError {
  return new DomainError(error.kind, error.code, `refused: ${error.message}`);
}

function sumBytes(pushes: ReadonlyArray<{ bytes: number }>): number {
  return pushes.reduce((total, push) => total + push.bytes, 0);
}

/**
 * The disk quotas of stored pushes (`--project-quota`, `--server-quota`): what the stored
 * revisions take (each content once), plus the pushes between their last check and their commit.
 */
export class PushQuotas {
  /** Pushes past their last quota check and not yet committed: counted against the quotas as stored. */
  readonly committing = new Set<{ project: string; contentHash: string; bytes: number }>();

  constructor(
    private readonly db: DB,
    private readonly limits: { projectQuotaBytes: number; serverQuotaBytes: number },
  ) {}

  /**
   * What a push of `tarballBytes` may still expand to under both quotas: the disk the stored
   * pushes take (each content once; this content itself not counted, it may be stored already),
   * per project and for the whole server. `refusal` names the quota that binds and its flag.
   */
  left(name: string, contentHash: string, tarballBytes: number): NonNullable<ExtractLimits['quota']> {
    const { db, limits } = this;
    const used = (where: string, ...params: string[]): number =>
      (
        db
          .prepare(
            `SELECT COALESCE(SUM(bytes), 0) AS n FROM (SELECT MAX(COALESCE(bytes, 0)) AS bytes FROM revisions WHERE content_hash != ? ${where} GROUP BY content_hash)`,
          )
          .get(contentHash, ...params) as { n: number }
      ).n;
    // Pushes between their last check and their commit count as stored (each content once).
    const committing = [...this.committing].filter((push) => push.contentHash !== contentHash);
    const projectUsed = used('AND project = ?', name) + sumBytes(committing.filter((push) => push.project === name));
    const serverUsed = used('') + sumBytes(committing);
    const projectLeft = limits.projectQuotaBytes - projectUsed - tarballBytes;
    const serverLeft = limits.serverQuotaBytes - serverUsed - tarballBytes;
    const byProject = projectLeft <= serverLeft;
    return {
      bytes: Math.min(projectLeft, serverLeft),
      refusal: (expandedBytes) =>
        new ExtractOverLimit(
          'insufficient-storage',
          byProject ? 'project_quota_exceeded' : 'server_quota_exceeded',
          byProject
            ? `the push (${tarballBytes} bytes of tarball, ${expandedBytes > 0 ? `over ${expandedBytes}` : 'more'} bytes extracted) does not fit in project "${name}"'s quota of ${limits.projectQuotaBytes} bytes, of which its stored pushes take ${projectUsed}: free space with \`cycle server-gc\` (it drops old revisions), or ask the server's operator to raise it (cycle server --project-quota SIZE)`
            : `the push (${tarballBytes} bytes of tarball, ${expandedBytes > 0 ? `over ${expandedBytes}` : 'more'} bytes extracted) does not fit in the server's quota of ${limits.serverQuotaBytes} bytes for stored pushes, of which ${serverUsed} are taken: free space with \`cycle server-gc\` (it drops old revisions), or ask the server's operator to raise it (cycle server --server-quota SIZE)`,
        ),
    };
  }
}
