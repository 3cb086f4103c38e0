# written by scripts/natsvc-plots.py; run as: gnuplot latency_mix_vs_public.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'latency_mix_vs_public.png'
set grid
set title 'lookup latency: the NAT mix against all public'
set xlabel 'latency (ms)'
set ylabel 'fraction of lookups'
set yrange [0:1]
set key bottom right
plot 'latency_mix_vs_public.dat' index 0 using 1:2 with steps lw 2 title 'mix', \
     'latency_mix_vs_public.dat' index 1 using 1:2 with steps lw 2 title 'mix from minute 18', \
     'latency_mix_vs_public.dat' index 2 using 1:2 with steps lw 2 title 'all public, nat on', \
     'latency_mix_vs_public.dat' index 3 using 1:2 with steps lw 2 title 'all public, nat off'
