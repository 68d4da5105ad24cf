import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type DB, openDatabase } from '../../src/server/db.js';
import { EventLog, type StoredEvent } from '../../src/server/events.js';
import { tempDir } from '../helpers/context.js';

let db: DB | undefined;
afterEach(() => {
  db?.close();
  db = undefined;
});

async function eventLog(): Promise<{ db: DB; events: EventLog; heard: Array<{ event: StoredEvent; value: unknown }> }> {
  db = openDatabase(path.join(await tempDir('cycle-events-'), 'cycle.db'));
  const events = new EventLog(db);
  const heard: Array<{ event: StoredEvent; value: unknown }> = [];
  const read = db.prepare("SELECT value FROM kv WHERE project = 'p' AND key = 'k'");
  // What a listener reads when it hears an event: the state the event describes must be there.
  events.subscribe((event) => heard.push({ event, value: (read.get() as { value: string } | undefined)?.value }));
  return { db, events, heard };
}

describe('EventLog.transaction', () => {
  it('listeners hear only after the commit, and then see the change the event describes', async () => {
    const { db, events, heard } = await eventLog();
    events.transaction((record) => {
      db.prepare("INSERT INTO kv (project, key, value, updated_at) VALUES ('p', 'k', '1', 'now')").run();
      record({ type: 'kv', project: 'p', data: { key: 'k' } });
      expect(heard).toHaveLength(0); // not yet committed
      record({ type: 'kv', project: 'p', data: { key: 'k', again: true } });
    });
    expect(heard.map((h) => [h.event.type, h.value])).toEqual([
      ['kv', '1'],
      ['kv', '1'],
    ]);
    expect(events.since({ project: 'p' }, 0).map((e) => e.seq)).toEqual(heard.map((h) => h.event.seq));
  });

  it('a transaction that fails leaves neither its change nor its events, and tells no one', async () => {
    const { db, events, heard } = await eventLog();
    expect(() =>
      events.transaction((record) => {
        db.prepare("INSERT INTO kv (project, key, value, updated_at) VALUES ('p', 'k', '1', 'now')").run();
        record({ type: 'kv', project: 'p', data: { key: 'k' } });
        throw new Error('the change failed');
      }),
    ).toThrow('the change failed');
    expect(heard).toEqual([]);
    expect(events.since({ project: 'p' }, 0)).toEqual([]);
    expect(db.prepare('SELECT COUNT(*) AS n FROM kv').get()).toEqual({ n: 0 });
    events.append({ type: 'kv', project: 'p', data: {} }); // the log works on after a failure
    expect(heard).toHaveLength(1);
  });
});
