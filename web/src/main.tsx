import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { checkSession, onSignedOut, signOut } from './api.js';
import { JobPage } from './pages-job.js';
import { JobsPage } from './pages-jobs.js';
import { AccountPage, MachinesPage, ProjectsPage, VolumesPage } from './pages-other.js';
import { Link, navigate, useLocation } from './util.js';
import './style.css';

const SECTIONS = [
  ['/jobs', 'Jobs'],
  ['/projects', 'Projects'],
  ['/volumes', 'Volumes'],
  ['/machines', 'Machines'],
  ['/account', 'Account'],
] as const;

function App() {
  const location = useLocation();
  // Shown at once (the page's first reads go out beside the session check): any 401 signs the page out.
  const [session, setSession] = useState<'in' | 'out'>('in');
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    onSignedOut(() => setSession('out'));
    checkSession().then(
      (signedIn) => setSession(signedIn ? 'in' : 'out'),
      (e: Error) => setError(e.message),
    );
  }, []);
  useEffect(() => {
    document.title = `${titleOf(location.path)} · cycle`;
  }, [location.path]);
  if (error) return <p class="failure">The server could not be reached: {error}</p>;
  if (session === 'out') return <SignedOut />;
  const path = location.path === '/' ? '/jobs' : location.path;
  const jobId = /^\/jobs\/([^/]+)$/.exec(path)?.[1];
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">cycle</span>
        <nav aria-label="sections">
          {SECTIONS.map(([href, label]) => (
            <Link href={href} class={path.startsWith(href) ? 'current' : ''}>
              {label}
            </Link>
          ))}
        </nav>
        <button
          type="button"
          class="signout"
          onClick={async () => {
            await signOut().catch(() => undefined);
            setSession('out');
            navigate('/signed-out');
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main">
        {jobId ? (
          <JobPage key={jobId} id={decodeURIComponent(jobId)} />
        ) : path === '/jobs' ? (
          <JobsPage search={location.search} />
        ) : path === '/projects' ? (
          <ProjectsPage />
        ) : path === '/volumes' ? (
          <VolumesPage />
        ) : path === '/machines' ? (
          <MachinesPage />
        ) : path === '/account' ? (
          <AccountPage />
        ) : (
          <p>No page here.</p>
        )}
      </main>
    </>
  );
}

function titleOf(path: string): string {
  const job = /^\/jobs\/([^/]+)$/.exec(path)?.[1];
  if (job) return decodeURIComponent(job);
  return SECTIONS.find(([href]) => path.startsWith(href))?.[1] ?? 'Jobs';
}

function SignedOut() {
  return (
    <main class="signed-out">
      <h1>Signed out</h1>
      <p>
        Open the page with a sign-in link: run <code>cycle dashboard</code> on a machine that has this server's token. A link works once, for 10 minutes.
      </p>
    </main>
  );
}

render(<App />, document.getElementById('app')!);
